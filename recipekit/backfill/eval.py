"""Score a reasoning-trace backfiller on held-out (instruction, solution) pairs.

    # generate (resumable), then score
    python eval/run_backfill_eval.py --model outputs/reasoning_backfill --data data/backfill/test.jsonl \\
        --out outputs/reasoning_backfill_eval
    # score an existing predictions file
    python eval/run_backfill_eval.py --score-only outputs/reasoning_backfill_eval/predictions.jsonl --out DIR
    # several runs side by side
    python eval/run_backfill_eval.py --compare A/metrics.json B/metrics.json --names before after

--data rows are {"instruction", "solution"} (raw legacy rows, or prep_backfill.py
--mode inference output). Decoding is greedy, so a score is repeatable; the backfill
job samples. Reported: the well-formed rate and the solution-preserved rate (defined in
recipekit/backfill/traces.py), the reasons replies were malformed, and trace lengths:
the tokens generated for a well-formed reply, i.e. its thinking block with both
sentinels, end-of-turn not counted. OUT gets predictions.jsonl, checks.jsonl (the
verdict on each row), metrics.json, metrics.md and trace_lengths.png.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from recipekit.backfill.rows import read_backfill_rows
from recipekit.backfill.traces import PROBLEMS, check_trace, mentions_answer
from recipekit.cli import command
from recipekit.dataio.jsonl import write_jsonl
from recipekit.dataio.prep_runner import Stats
from recipekit.dataio.rows import PrepError, RowError
from recipekit.generation.eval_runner import EvalDataError, generate_predictions, run_scorer, scorer_parser
from recipekit.generation.predictions import PredictionsError, read_predictions
from recipekit.generation.shards import parse_args
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.tables import fmt, histogram_png, markdown_table, write_metrics
from recipekit.templates.lengths import percentile

PREDICTION_FIELDS = ("id", "solution", "output", "new_tokens", "stopped")
CARD_ROWS = (  # (label in the table, key, shown as percent)
    ("Well-formed rate", "well_formed_rate", True),
    ("Solution-preserved rate", "solution_preserved_rate", True),
    ("Answer mentioned (one-number solutions)", "answer_mentioned_rate", True),
    ("Token budget reached", "budget_reached", False),
    ("Rows", "n", False),
)
LENGTH_KEYS = ("mean", "median", "p90", "max")


def read_test_rows(path: str | Path) -> list[dict[str, Any]]:
    try:
        return read_backfill_rows(path, Stats())
    except (RowError, PrepError) as err:
        raise EvalDataError(str(err)) from err


def generate(args: argparse.Namespace) -> Path:
    def record(row, prompt, result, generator) -> dict[str, Any]:
        return {"id": row["id"], "instruction": row["instruction"], "solution": row["solution"],
                "output": result.text, "new_tokens": result.new_tokens, "stopped": result.stopped}

    return generate_predictions(args, read_test_rows(args.data), PREDICTION_FIELDS, record, "backfill eval")


def length_stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0, **dict.fromkeys(LENGTH_KEYS)}
    ordered = sorted(values)
    return {"n": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "p90": percentile(ordered, 0.9), "max": ordered[-1]}


def _checked_rows(path: str | Path) -> list[dict[str, Any]]:
    rows = read_predictions(path, PREDICTION_FIELDS)
    if not rows:
        raise PredictionsError(f"{path}: no predictions to score")
    for row in rows:
        where = f"{path}: row id {row['id']!r}: field"
        if not isinstance(row["output"], str) or not isinstance(row["solution"], str):
            raise PredictionsError(f"{where} 'output' and 'solution' must be strings")
        if not isinstance(row["stopped"], bool):
            raise PredictionsError(f"{where} 'stopped' must be true or false")
        if isinstance(row["new_tokens"], bool) or not isinstance(row["new_tokens"], int) or row["new_tokens"] < 0:
            raise PredictionsError(f"{where} 'new_tokens' must be a non-negative integer")
    return rows


def score(predictions_path: str | Path, out: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(out)
    rows = _checked_rows(predictions_path)
    checks = [check_trace(r["output"], r["solution"], r["stopped"]) for r in rows]
    good = [(r, c) for r, c in zip(rows, checks) if c.well_formed]
    mentioned = [m for m in (mentions_answer(c.thinking, r["solution"]) for r, c in good) if m is not None]
    n = len(rows)
    metrics = {
        "n": n,
        "well_formed": len(good),
        "well_formed_rate": len(good) / n,
        "solution_changed": sum(c.solution_changed for c in checks),
        "solution_preserved_rate": sum(not c.solution_changed for c in checks) / n,
        "malformed_by_reason": {p: k for p, k in Counter(c.reason for c in checks if c.reason).most_common()},
        "rows_with_problem": {p: sum(p in c.problems for c in checks) for p in PROBLEMS},
        "budget_reached": sum(not r["stopped"] for r in rows),
        "answer_checked": len(mentioned),
        "answer_mentioned_rate": sum(mentioned) / len(mentioned) if mentioned else None,
        "trace_tokens": length_stats([r["new_tokens"] for r, _ in good]),
        "generated_tokens": length_stats([r["new_tokens"] for r in rows]),
    }
    write_jsonl(out / "checks.jsonl", [{"id": r["id"], "well_formed": c.well_formed, "problems": list(c.problems),
                                        "solution_changed": c.solution_changed} for r, c in zip(rows, checks)])
    write_metrics(out, metrics, metrics_markdown({out.name: metrics}))
    histogram_png([r["new_tokens"] for r, _ in good], out / "trace_lengths.png",
                  f"trace length, well-formed replies ({len(good)} of {n})", "tokens")
    write_manifest(out, config=vars(args), inputs=[predictions_path], extra={"step": "score"})
    return metrics


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """One column per run: the rates, trace lengths, then each run's malformed reasons."""
    header = ["Metric", *runs]
    rows = [[label, *(fmt(m.get(key), percent) for m in runs.values())] for label, key, percent in CARD_ROWS]
    rows += [[f"Trace tokens, {k}", *(fmt(m["trace_tokens"][k], digits=1) for m in runs.values())]
             for k in LENGTH_KEYS]
    text = markdown_table(header, rows)
    for name, m in runs.items():
        if m["malformed_by_reason"]:
            text += f"\nMalformed replies by first reason ({name}):\n\n"
            text += markdown_table(["Reason", "Rows"], list(m["malformed_by_reason"].items()))
    return text


def build_parser() -> argparse.ArgumentParser:
    return scorer_parser(__doc__, "held-out JSONL rows with instruction and solution", max_new_tokens=1024)


@command
def main(argv: list[str] | None = None) -> int:
    return run_scorer(parse_args(build_parser(), argv, __name__), generate, score, metrics_markdown)


if __name__ == "__main__":  # also how --replicas starts its workers
    raise SystemExit(main())
