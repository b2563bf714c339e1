"""The supervisor's verdict: parsing `<think>…</think>{"label", "reason"}` and class metrics.

Parsing rule: the verdict is the text after the last `</think>`, with surrounding
whitespace and chat special tokens stripped; the first JSON object in it is decoded; its
`label`, stripped and lower-cased, must be `correct` or `incorrect`. Anything else is a
parse failure, which counts as a wrong prediction for accuracy and as a prediction of
neither class for per-class precision and recall.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from recipekit.templates.special_tokens import strip_special_tokens

LABELS = ("correct", "incorrect")
UNPARSED = "<unparsed>"


@dataclass(frozen=True)
class Verdict:
    label: str | None
    reason: str | None
    failure: str | None  # why parsing failed, None on success


def _first_json_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_verdict(output: str) -> Verdict:
    if "</think>" not in output:
        return Verdict(None, None, "no </think>")
    tail = strip_special_tokens(output.rsplit("</think>", 1)[1])
    obj = _first_json_object(tail)
    if obj is None:
        return Verdict(None, None, "no JSON object after </think>")
    label = obj.get("label")
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        return Verdict(None, None, f"label {label!r} is not one of {LABELS}")
    reason = obj.get("reason")
    return Verdict(label.strip().lower(), reason if isinstance(reason, str) else None, None)


def classification_metrics(gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the two classes, and per-class precision/recall/F1/support."""
    from sklearn.metrics import precision_recall_fscore_support

    y_pred = [p if p in LABELS else UNPARSED for p in predicted]
    n = len(gold)
    precision, recall, f1, support = precision_recall_fscore_support(
        list(gold), y_pred, labels=list(LABELS), zero_division=0
    )
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(LABELS, precision, recall, f1, support)
    }
    return {
        "n": n,
        "parse_fail_rate": sum(p == UNPARSED for p in y_pred) / n if n else 0.0,
        "accuracy": sum(g == p for g, p in zip(gold, y_pred)) / n if n else 0.0,
        "macro_f1": float(sum(c["f1"] for c in per_class.values()) / len(LABELS)),
        "per_class": per_class,
    }
