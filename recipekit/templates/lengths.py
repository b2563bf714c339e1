"""Token lengths of rendered conversations: for the summary and for clipping to --max-tokens."""

from __future__ import annotations

from typing import Sequence

from recipekit.templates.chat_format import render


def token_length(tokenizer, messages: list[dict[str, str]]) -> int:
    """Tokens of the full training text; the template writes BOS itself, so none is added."""
    return len(tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"])


def percentile(ordered: Sequence[int], q: float) -> int:
    """The value at quantile `q` (0 to 1) of the sorted `ordered`, by nearest rank: a length that occurs."""
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def percentiles(lengths: list[int]) -> dict[str, int]:
    ordered = sorted(lengths)
    return {"p50": percentile(ordered, 0.5), "p90": percentile(ordered, 0.9), "p99": percentile(ordered, 0.99),
            "max": ordered[-1]}
