"""Score a customer-support chatbot on held-out Bitext rows: replies against references.

    # generate (resumable), then score
    python eval/run_chatbot_eval.py --model outputs/cs_chatbot_merged --data data/cs_chatbot/test.jsonl --out outputs/cs_chatbot_eval
    # score an existing predictions file
    python eval/run_chatbot_eval.py --score-only outputs/cs_chatbot_eval/predictions.jsonl --out outputs/cs_chatbot_eval
    # base against fine-tuned
    python eval/run_chatbot_eval.py --compare outputs/base_eval/metrics.json outputs/cs_chatbot_eval/metrics.json

Reported overall, per intent and per category: ROUGE-L, BLEU-4 and chrF of the greedy
replies against the reference replies, and the perplexity of the references under the
model (teacher-forced on the prompt the generator sees; reply tokens only). The NLL is
computed while generating and kept per row in predictions.jsonl, so --score-only can
aggregate any grouping; with --backend vllm or --no-perplexity it is left out.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from recipekit.cli import command
from recipekit.generation.engine import TransformersGenerator
from recipekit.generation.eval_runner import (
    EvalDataError,
    generate_predictions,
    read_conversation_rows,
    run_scorer,
    scorer_parser,
)
from recipekit.generation.predictions import PredictionsError, read_predictions
from recipekit.generation.shards import parse_args
from recipekit.metrics.perplexity import perplexity, reference_nll
from recipekit.metrics.text import bertscore_label, bleu4, chrf, rouge_l, text_scores
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.tables import bar_chart_png, fmt, markdown_table, unavailable_note, write_metrics
from recipekit.templates.special_tokens import strip_special_tokens

PREDICTION_FIELDS = ("id", "intent", "category", "reference", "output", "ref_nll", "ref_tokens")
GROUPINGS = ("category", "intent")
OVERALL_ROWS = (  # (label in the table, key); a label of None is named from the runs
    ("n", "n"),
    ("ROUGE-L (Hangul/CJK-aware)", "rouge_l"),
    ("BLEU-4", "bleu4"),
    ("chrF", "chrf"),
    ("Perplexity (references)", "perplexity"),
    ("ROUGE-L (ASCII tokens)", "rouge_l_ascii"),
    (None, "bertscore_f1"),
    ("SBERT-cos", "sbert_cos"),
)


def _intent_category(raw: dict[str, Any], reference: str, where: str) -> dict[str, Any]:
    found = {}
    for field in GROUPINGS:
        value = raw.get(field)
        if not isinstance(value, str) or not value.strip():
            raise EvalDataError(f"{where}: field {field!r}: missing or not a non-empty string "
                                "(expected the prep_bitext.py shape)")
        found[field] = value
    return found


def read_test_rows(path: str | Path) -> list[dict[str, Any]]:
    """Held-out rows in the prep_bitext.py shape as {id, intent, category, messages, reference}."""
    return read_conversation_rows(path, _intent_category)


def generate(args: argparse.Namespace) -> Path:
    def record(row, prompt, result, generator) -> dict[str, Any]:
        nll, tokens = None, None
        if isinstance(generator, TransformersGenerator) and not args.no_perplexity:
            nll, tokens = reference_nll(generator.model, generator.tokenizer, prompt, row["reference"])
        return {"id": row["id"], "intent": row["intent"], "category": row["category"], "reference": row["reference"],
                "output": result.text, "ref_nll": nll, "ref_tokens": tokens,
                "new_tokens": result.new_tokens, "stopped": result.stopped}

    return generate_predictions(args, read_test_rows(args.data), PREDICTION_FIELDS, record, "chatbot eval")


def _perplexity(rows: list[dict[str, Any]]) -> float | None:
    scored = [r for r in rows if r["ref_nll"] is not None]
    if len(scored) < len(rows):  # a partial average would not be comparable
        return None
    return perplexity((r["ref_nll"] for r in scored), (r["ref_tokens"] for r in scored))


def group_scores(rows: list[dict[str, Any]], bleu_tokenize: str) -> dict[str, Any]:
    outputs = [strip_special_tokens(r["output"]) for r in rows]
    references = [r["reference"] for r in rows]
    return {
        "n": len(rows),
        "rouge_l": rouge_l(outputs, references),
        "bleu4": bleu4(outputs, references, bleu_tokenize)[0],
        "chrf": chrf(outputs, references)[0],
        "perplexity": _perplexity(rows),
    }


def _check_nll(rows: list[dict[str, Any]], path: str | Path) -> None:
    for row in rows:
        nll, tokens = row["ref_nll"], row["ref_tokens"]
        if (nll is None) != (tokens is None) or (tokens is not None and not (isinstance(tokens, int) and tokens >= 0)):
            raise PredictionsError(f"{path}: id {row['id']!r}: fields 'ref_nll'/'ref_tokens' must both be null "
                                   f"or a number and a token count, got {nll!r}/{tokens!r}")


def score(predictions_path: str | Path, out: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(out)
    rows = read_predictions(predictions_path, PREDICTION_FIELDS)
    if not rows:
        raise PredictionsError(f"{predictions_path}: no predictions to score")
    _check_nll(rows, predictions_path)
    outputs = [strip_special_tokens(r["output"]) for r in rows]
    texts = text_scores(outputs, [r["reference"] for r in rows], bleu_tokenize=args.bleu_tokenize,
                        bertscore_model=args.bertscore_model, bertscore_layer=args.bertscore_layer,
                        sbert_model=args.sbert_model)
    metrics: dict[str, Any] = {"n": len(rows), **texts.values, "perplexity": _perplexity(rows),
                               "ref_tokens": sum(r["ref_tokens"] or 0 for r in rows)}
    if metrics["perplexity"] is None:
        texts.unavailable["perplexity"] = "some predictions carry no reference NLL (vLLM or --no-perplexity)"
    metrics["unavailable"] = texts.unavailable
    for field in GROUPINGS:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[row[field]].append(row)
        metrics[f"per_{field}"] = {name: group_scores(members, args.bleu_tokenize)
                                   for name, members in sorted(groups.items())}
    write_metrics(out, metrics, metrics_markdown({out.name: metrics}))
    for field in GROUPINGS:
        per = metrics[f"per_{field}"]
        bar_chart_png(list(per), {"ROUGE-L x100": [g["rouge_l"] * 100 for g in per.values()],
                                  "BLEU-4": [g["bleu4"] for g in per.values()],
                                  "chrF": [g["chrf"] for g in per.values()]},
                      out / f"scores_by_{field}.png", f"chatbot replies by {field} (n={len(rows)})")
    write_manifest(out, config=vars(args), inputs=[predictions_path], extra={"step": "score"})
    return metrics


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """One column per run, then each run's per-category and per-intent tables."""
    text = markdown_table(["Metric", *runs], [[label or bertscore_label(list(runs.values())),
                                               *(fmt(m.get(key)) for m in runs.values())]
                                              for label, key in OVERALL_ROWS])
    for name, m in runs.items():
        for field in GROUPINGS:
            rows = [[group, g["n"], fmt(g["rouge_l"]), fmt(g["bleu4"]), fmt(g["chrf"]), fmt(g["perplexity"])]
                    for group, g in m[f"per_{field}"].items()]
            text += f"\nPer {field} ({name}):\n\n" + markdown_table(
                [field.capitalize(), "n", "ROUGE-L", "BLEU-4", "chrF", "Perplexity"], rows)
        text += unavailable_note(m)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = scorer_parser(__doc__, "held-out JSONL in the prep_bitext.py shape", max_new_tokens=256, text_metrics=True)
    parser.add_argument("--no-perplexity", action="store_true", help="skip the reference NLL pass")
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    return run_scorer(parse_args(build_parser(), argv, __name__), generate, score, metrics_markdown)


if __name__ == "__main__":  # also how --replicas starts its workers
    raise SystemExit(main())
