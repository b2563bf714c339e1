"""Token lengths of rendered conversations: for the summary and for clipping to --max-tokens."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from recipekit.templates.chat_format import render


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def token_length(tokenizer, messages: list[dict[str, str]]) -> int:
    """Tokens of the full training text; the template writes BOS itself, so none is added."""
    return token_lengths(tokenizer, [messages])[0]


def token_lengths(tokenizer, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
    """`token_length` of each conversation, rendered one by one and tokenised in one batched call."""
    texts = [render(tokenizer, messages) for messages in conversations]
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def percentiles(lengths: list[int]) -> dict[str, int]:
    ordered = sorted(lengths)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}
