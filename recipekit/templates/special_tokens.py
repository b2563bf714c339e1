"""Special tokens: the chat formats' turn markers, and the backfill sentinels (read from the one
data file that lists them)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

# What closes a turn in the chat formats of the recipes and their bases, most specific first:
# Gemma 4, Gemma 2 and 3, ChatML (Qwen 3), Llama 3.
END_OF_TURN_TOKENS = ("<turn|>", "<end_of_turn>", "<|im_end|>", "<|eot_id|>")
# Every special token of those formats that a reply decoded with its special tokens may hold.
CHAT_SPECIAL_TOKENS = (
    *END_OF_TURN_TOKENS, "<|turn>", "<start_of_turn>", "<|im_start|>", "<|channel>", "<channel|>",
    "<eos>", "<bos>", "<pad>", "<|endoftext|>", "</s>", "<s>",
)
_CHAT_SPECIALS = re.compile("|".join(re.escape(t) for t in CHAT_SPECIAL_TOKENS))


def strip_special_tokens(text: str) -> str:
    """`text` without the chat formats' special tokens and surrounding white space: what a scorer reads."""
    return _CHAT_SPECIALS.sub("", text).strip()


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
