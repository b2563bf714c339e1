"""Score a supervisor checkpoint with the card's metrics.

    # generate (resumable), then score
    python eval/run_supervisor_eval.py --model outputs/supervisor_merged --data data/supervisor/test.jsonl --out outputs/eval
    # score an existing predictions file
    python eval/run_supervisor_eval.py --score-only outputs/eval/predictions.jsonl --out outputs/eval
    # the card's side-by-side table
    python eval/run_supervisor_eval.py --compare outputs/eval_stage1/metrics.json outputs/eval/metrics.json

Prompts are cut from the training rendering of each row (for Gemma 4: the rendering
without generation prompt, then "<|turn>model\\n"), decoding is greedy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recipekit.cli import command
from recipekit.generation.eval_runner import (
    EvalDataError,
    generate_predictions,
    read_conversation_rows,
    run_scorer,
    scorer_parser,
)
from recipekit.generation.predictions import PredictionsError, read_predictions
from recipekit.generation.shards import parse_args
from recipekit.metrics.text import bertscore_label, text_scores
from recipekit.metrics.verdicts import LABELS, UNPARSED, classification_metrics, parse_verdict
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.tables import confusion_matrix_png, fmt, markdown_table, unavailable_note, write_metrics
from recipekit.templates.special_tokens import strip_special_tokens

PREDICTION_FIELDS = ("id", "label", "reference", "output")
CARD_ROWS = (  # (label in the table, key, shown as percent); a label of None is named from the runs
    ("Parse-fail rate", "parse_fail_rate", True),
    ("Accuracy", "accuracy", True),
    ("Macro-F1", "macro_f1", False),
    ("chrF", "chrf", False),
    ("ROUGE-L (ASCII tokens, card-comparable)", "rouge_l_ascii", False),
    ("ROUGE-L (Hangul/CJK-aware)", "rouge_l", False),
    ("BLEU-4", "bleu4", False),
    (None, "bertscore_f1", False),
    ("SBERT-cos", "sbert_cos", False),
)


def _label(raw: dict[str, Any], reference: str, where: str) -> dict[str, Any]:
    label = raw.get("label") or parse_verdict(reference).label
    if label not in LABELS:
        raise EvalDataError(f"{where}: field 'label': {label!r} is not one of {LABELS}")
    return {"label": label}


def read_test_rows(path: str | Path) -> list[dict[str, Any]]:
    """Test rows in the prep_supervisor.py shape as {id, label, messages, reference}."""
    return read_conversation_rows(path, _label)


def generate(args: argparse.Namespace) -> Path:
    def record(row, prompt, result, generator) -> dict[str, Any]:
        return {"id": row["id"], "label": row["label"], "reference": row["reference"], "output": result.text,
                "new_tokens": result.new_tokens, "stopped": result.stopped}

    return generate_predictions(args, read_test_rows(args.data), PREDICTION_FIELDS, record, "supervisor eval")


def score(predictions_path: str | Path, out: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(out)
    rows = read_predictions(predictions_path, PREDICTION_FIELDS)
    if not rows:
        raise PredictionsError(f"{predictions_path}: no predictions to score")
    verdicts = [parse_verdict(r["output"]) for r in rows]
    gold = [r["label"] for r in rows]
    metrics = classification_metrics(gold, [v.label for v in verdicts])
    failures: dict[str, int] = {}
    for v in verdicts:
        if v.failure:
            key = v.failure.split(" is not one of")[0] if v.failure.startswith("label") else v.failure
            failures[key] = failures.get(key, 0) + 1
    metrics["parse_failures"] = failures
    texts = text_scores(
        [strip_special_tokens(r["output"]) for r in rows], [r["reference"] for r in rows],
        bleu_tokenize=args.bleu_tokenize, bertscore_model=args.bertscore_model,
        bertscore_layer=args.bertscore_layer, sbert_model=args.sbert_model,
    )
    metrics.update(texts.values)
    metrics["unavailable"] = texts.unavailable
    write_metrics(out, metrics, metrics_markdown({out.name: metrics}))
    confusion_matrix_png(gold, [v.label or UNPARSED for v in verdicts], LABELS, out / "confusion_matrix.png",
                         f"supervisor verdicts (n={len(rows)})")
    write_manifest(out, config=vars(args), inputs=[predictions_path], extra={"step": "score"})
    return metrics


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The card's layout: one column per run, then each run's per-class table."""
    header = ["Metric", *runs]
    rows = [[label or bertscore_label(list(runs.values())), *(fmt(m.get(key), percent) for m in runs.values())]
            for label, key, percent in CARD_ROWS]
    text = markdown_table(header, rows)
    for name, m in runs.items():
        per_class = [[c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                     for c, v in m["per_class"].items()]
        text += f"\nPer-class ({name}):\n\n" + markdown_table(["Class", "Precision", "Recall", "F1", "Support"], per_class)
        text += unavailable_note(m)
    return text


def build_parser() -> argparse.ArgumentParser:
    return scorer_parser(__doc__, "test JSONL in the prep_supervisor.py shape", max_new_tokens=1200, text_metrics=True)


@command
def main(argv: list[str] | None = None) -> int:
    return run_scorer(parse_args(build_parser(), argv, __name__), generate, score, metrics_markdown)


if __name__ == "__main__":  # also how --replicas starts its workers
    raise SystemExit(main())
