"""The backfill sentinel tokens, read from the one data file that lists them."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _sentinels() -> dict[str, list[str]]:
    text = resources.files("recipekit.data").joinpath("backfill_sentinels.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if k != "comment"}


def backfill_sentinels() -> list[str]:
    """All six sentinels, in instruction, solution, thinking order."""
    data = _sentinels()
    return data["instruction"] + data["solution"] + data["thinking"]


def sentinel_pair(kind: str) -> tuple[str, str]:
    """(start, end) sentinels for 'instruction', 'solution' or 'thinking'."""
    start, end = _sentinels()[kind]
    return start, end
