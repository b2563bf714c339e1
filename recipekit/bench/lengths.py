"""Token lengths the benchmarks run on: fixture rows of a recipe, and seeded synthetic sets.

The synthetic supervisor set stands in for the card's 3,771 stage-2 rows, whose lengths
are not published. Its distribution is written here once and quoted in the reports:
log-normal token lengths (median 1,800, sigma 0.45), redrawn until they fall inside
[600, 4,096] - a system prompt, a transcript and a retrieved document clipped by
character to fit 4,096 tokens, and a 500-900 token judgement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recipekit.checkpoints.load import load_tokenizer
from recipekit.dataio.jsonl import iter_json_objects
from recipekit.templates.chat_format import to_messages
from recipekit.templates.lengths import token_length


@dataclass(frozen=True)
class LengthSpec:
    """A seeded, truncated log-normal distribution of token lengths."""

    name: str
    rows: int
    low: int
    high: int
    median: float
    sigma: float
    seed: int

    def describe(self) -> str:
        return (f"{self.rows} rows, log-normal token lengths (median {self.median:g}, sigma {self.sigma:g}) "
                f"redrawn until inside [{self.low}, {self.high}], seed {self.seed}")


SUPERVISOR_STAGE2 = LengthSpec("supervisor_stage2_synthetic", rows=3771, low=600, high=4096,
                               median=1800, sigma=0.45, seed=42)
# The scorer's prompts: the same rows without their judgement (about 700 tokens).
SUPERVISOR_TEST_PROMPTS = LengthSpec("supervisor_test_prompts_synthetic", rows=199, low=256, high=3396,
                                     median=1100, sigma=0.45, seed=7)


def synthetic_lengths(spec: LengthSpec) -> np.ndarray:
    """Draw `spec.rows` lengths; out-of-range draws are redrawn, so the shape stays log-normal inside."""
    if not 0 < spec.low <= spec.high:
        raise ValueError(f"{spec.name}: need 0 < low <= high, got [{spec.low}, {spec.high}]")
    rng = np.random.default_rng(spec.seed)
    kept: list[int] = []
    while len(kept) < spec.rows:
        draw = np.rint(rng.lognormal(np.log(spec.median), spec.sigma, size=spec.rows)).astype(np.int64)
        kept.extend(int(x) for x in draw if spec.low <= x <= spec.high)
    return np.asarray(kept[: spec.rows], dtype=np.int64)


def spec_record(spec: LengthSpec) -> dict[str, Any]:
    return {**asdict(spec), "description": spec.describe()}


def conversation_lengths(path: str | Path, tokenizer_path: str | Path, field: str = "conversations") -> np.ndarray:
    """Token length of each row's full training text (the tokenizer's chat template)."""
    tokenizer = load_tokenizer(str(tokenizer_path))
    lengths = []
    for line_no, row in iter_json_objects(path, ValueError):
        try:
            messages = to_messages(row[field])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}:{line_no}: field {field!r}: {err}") from err
        lengths.append(token_length(tokenizer, messages))
    if not lengths:
        raise ValueError(f"{path}: no rows")
    return np.asarray(lengths, dtype=np.int64)
