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
import json
import sys
from pathlib import Path
from typing import Any

from recipekit.chat_format import ConversationError, inference_prompt, to_messages
from recipekit.generation import (
    ModelLoadError,
    Sampling,
    TransformersGenerator,
    VllmGenerator,
    load_chat_model,
    pending,
)
from recipekit.manifest import write_manifest
from recipekit.metrics.text import text_scores
from recipekit.metrics.verdicts import LABELS, UNPARSED, classification_metrics, parse_verdict, strip_special_tokens
from recipekit.predictions import PredictionsError, PredictionStore, read_predictions
from recipekit.reporting import confusion_matrix_png, fmt, markdown_table, write_json

PREDICTION_FIELDS = ("id", "label", "reference", "output")
CARD_ROWS = (  # (label in the table, key, shown as percent)
    ("Parse-fail rate", "parse_fail_rate", True),
    ("Accuracy", "accuracy", True),
    ("Macro-F1", "macro_f1", False),
    ("chrF", "chrf", False),
    ("ROUGE-L", "rouge_l", False),
    ("ROUGE-L (ASCII tokenizer)", "rouge_l_ascii", False),
    ("BLEU-4", "bleu4", False),
    ("BERTScore-F1", "bertscore_f1", False),
    ("SBERT-cos", "sbert_cos", False),
)


class EvalDataError(ValueError):
    """A test file row that is not in the prep_supervisor.py shape."""


def read_test_rows(path: str | Path) -> list[dict[str, Any]]:
    """Test rows as {id, label, messages, reference}; errors name the file, line and field."""
    path = Path(path)
    rows, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalDataError(f"{where}: not valid JSON ({err.msg})") from err
            if not isinstance(raw, dict) or "conversations" not in raw:
                raise EvalDataError(f"{where}: field 'conversations' is missing (expected the prep_supervisor.py shape)")
            try:
                messages = to_messages(raw["conversations"])
            except ConversationError as err:
                raise EvalDataError(f"{where}: field 'conversations': {err}") from err
            if messages[-1]["role"] != "assistant":
                raise EvalDataError(f"{where}: field 'conversations': the last turn must be the gold assistant reply")
            reference = messages[-1]["content"]
            label = raw.get("label") or parse_verdict(reference).label
            if label not in LABELS:
                raise EvalDataError(f"{where}: field 'label': {label!r} is not one of {LABELS}")
            row_id = str(raw.get("id", f"line-{line_no}"))
            if row_id in seen:
                raise EvalDataError(f"{where}: field 'id': duplicate id {row_id!r}")
            seen.add(row_id)
            rows.append({"id": row_id, "label": label, "messages": messages, "reference": reference})
    if not rows:
        raise EvalDataError(f"{path}: no rows")
    return rows


def generate(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    rows = read_test_rows(args.data)[: args.limit]
    store = PredictionStore(out / "predictions.jsonl", PREDICTION_FIELDS)
    todo = pending(rows, store.done)
    print(f"{len(rows)} rows, {len(rows) - len(todo)} already in {store.path}, {len(todo)} to generate")
    if todo:
        if args.backend == "vllm":
            if args.adapter:
                raise ModelLoadError("--backend vllm needs a merged checkpoint (--model); merge adapters first")
            generator = VllmGenerator(args.model, dtype=args.dtype)
            tokenizer = generator.tokenizer
        else:
            model, tokenizer = load_chat_model(args.model, args.base, args.adapter or (), dtype=args.dtype)
            generator = TransformersGenerator(model, tokenizer, batch_size=args.batch_size)
        prompts = [inference_prompt(tokenizer, row["messages"]) for row in todo]

        def save(index: int, result) -> None:
            row = todo[index]
            store.append({"id": row["id"], "label": row["label"], "reference": row["reference"], "output": result.text,
                          "new_tokens": result.new_tokens, "stopped": result.stopped})

        generator.generate(prompts, Sampling(max_new_tokens=args.max_new_tokens), on_done=save, desc="supervisor eval")
    write_manifest(out, config=vars(args), inputs=[args.data, *(args.adapter or [])], seed=None)
    return store.path


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
        bertscore_layers=args.bertscore_layers, sbert_model=args.sbert_model,
    )
    metrics.update(texts.values)
    metrics["unavailable"] = texts.unavailable
    write_json(out / "metrics.json", metrics)
    (out / "metrics.md").write_text(metrics_markdown({out.name: metrics}), encoding="utf-8")
    confusion_matrix_png(gold, [v.label or UNPARSED for v in verdicts], LABELS, out / "confusion_matrix.png",
                         f"supervisor verdicts (n={len(rows)})")
    write_manifest(out, config=vars(args), inputs=[predictions_path], extra={"step": "score"})
    return metrics


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The card's layout: one column per run, then each run's per-class table."""
    header = ["Metric", *runs]
    rows = [[label, *(fmt(m.get(key), percent) for m in runs.values())] for label, key, percent in CARD_ROWS]
    text = markdown_table(header, rows)
    for name, m in runs.items():
        per_class = [[c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                     for c, v in m["per_class"].items()]
        text += f"\nPer-class ({name}):\n\n" + markdown_table(["Class", "Precision", "Recall", "F1", "Support"], per_class)
        if m.get("unavailable"):
            text += "\nUnavailable: " + "; ".join(f"{k}: {v}" for k, v in m["unavailable"].items()) + "\n"
    return text


def compare(paths: list[str], names: list[str] | None) -> str:
    if names and len(names) != len(paths):
        raise SystemExit("--names needs one name per metrics file")
    runs = {}
    for i, path in enumerate(paths):
        runs[names[i] if names else Path(path).parent.name] = json.loads(Path(path).read_text(encoding="utf-8"))
    return metrics_markdown(runs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="merged checkpoint")
    parser.add_argument("--base", help="base checkpoint, with --adapter")
    parser.add_argument("--adapter", action="append", help="LoRA adapter applied on --base (repeat to chain)")
    parser.add_argument("--data", help="test JSONL in the prep_supervisor.py shape")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--score-only", metavar="PREDICTIONS", help="score an existing predictions.jsonl")
    parser.add_argument("--compare", nargs="+", metavar="METRICS", help="print metrics.json files side by side")
    parser.add_argument("--names", nargs="+", help="column names for --compare")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=1200)
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--limit", type=int, help="score only the first N test rows")
    parser.add_argument("--bleu-tokenize", default="13a", help="sacrebleu tokenizer (13a, intl, char, flores200, ko-mecab...)")
    parser.add_argument("--bertscore-model", help="encoder for BERTScore (path or hub name)")
    parser.add_argument("--bertscore-layers", type=int, help="layer BERTScore reads (default: the last)")
    parser.add_argument("--sbert-model", help="sentence-transformers model for SBERT cosine")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.compare:
            print(compare(args.compare, args.names))
            return 0
        if not args.out:
            raise SystemExit("--out is required")
        if args.score_only:
            predictions = args.score_only
        else:
            if not args.data:
                raise SystemExit("--data is required to generate (or pass --score-only)")
            predictions = generate(args)
        metrics = score(predictions, args.out, args)
    except (EvalDataError, PredictionsError, ModelLoadError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(metrics_markdown({Path(args.out).name: metrics}))
    return 0
