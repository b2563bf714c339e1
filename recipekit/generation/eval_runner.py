"""What the generating scorers share: test rows, resumable generation, and the command flow.

A scorer reads held-out conversations, generates a reply for each row that is not yet
in OUT/predictions.jsonl (so an interrupted run resumes where it stopped), then scores
the predictions file; `--score-only` re-scores an existing file without a model and
`--compare` prints several metrics.json files side by side. Each scorer supplies the
fields it keeps per row and its own metrics. With `--shard I/N` a run only generates its
shard's rows; `--merge-shards N` (or `--replicas N`) merges the shards, then scores
(recipekit/generation/shards.py). When --model is a local checkpoint directory with a manifest
(merged, exported or fully trained here), its README.md model card is rewritten with the
new metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from recipekit.checkpoints.model_path import check_model_args
from recipekit.dataio.jsonl import iter_json_objects
from recipekit.errors import RecipekitError, UsageError
from recipekit.generation.engine import (
    DEFAULT_BATCH_SIZE,
    Generated,
    ModelLoadError,
    Sampling,
    TransformersGenerator,
    VllmServerGenerator,
    load_chat_model,
    pending,
)
from recipekit.generation.shards import add_scale_out_args, fill
from recipekit.generation.vllm_server import DEFAULT_API_KEY_ENV, DEFAULT_CONCURRENCY, EngineOptions
from recipekit.metrics.text import resolve_bertscore_layer
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.model_card import refresh_card
from recipekit.templates.chat_format import ConversationError, inference_prompt, to_messages


class EvalDataError(RecipekitError, ValueError):
    """A test file row that is not in the shape its preprocessor writes."""


# metadata(raw_row, reference, where) -> the extra fields kept on the row; raises EvalDataError.
Metadata = Callable[[dict[str, Any], str, str], dict[str, Any]]
# record(row, prompt, result, generator) -> the predictions.jsonl line of the row.
Record = Callable[[dict[str, Any], str, Generated, Any], dict[str, Any]]


def read_conversation_rows(path: str | Path, metadata: Metadata) -> list[dict[str, Any]]:
    """Rows as {id, messages, reference, **metadata}; errors name the file, line and field."""
    path = Path(path)
    rows, seen = [], set()
    for line_no, raw in iter_json_objects(path, EvalDataError):
        where = f"{path}:{line_no}"
        if "conversations" not in raw:
            raise EvalDataError(f"{where}: field 'conversations' is missing")
        try:
            messages = to_messages(raw["conversations"])
        except ConversationError as err:
            raise EvalDataError(f"{where}: field 'conversations': {err}") from err
        if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
            raise EvalDataError(f"{where}: field 'conversations': the last turn must be the gold assistant reply")
        row_id = str(raw.get("id", f"line-{line_no}"))
        if row_id in seen:
            raise EvalDataError(f"{where}: field 'id': duplicate id {row_id!r}")
        seen.add(row_id)
        rows.append({"id": row_id, "messages": messages, "reference": messages[-1]["content"],
                     **metadata(raw, messages[-1]["content"], where)})
    if not rows:
        raise EvalDataError(f"{path}: no rows")
    return rows


def open_generator(args: argparse.Namespace, log_dir: str | Path):
    """The generator the flags ask for, a context manager (vLLM needs a merged checkpoint; a server it starts
    logs to LOG_DIR/vllm_server.log)."""
    if args.backend == "vllm":
        if args.adapter:
            raise ModelLoadError("--backend vllm needs a merged checkpoint (--model); merge adapters first")
        return VllmServerGenerator(args.model, engine_options(args), args.server_url or (), log_dir,
                                   args.api_key_env, args.vllm_python, args.max_concurrency)
    model, tokenizer = load_chat_model(args.model, args.base, args.adapter or (), dtype=args.dtype)
    return TransformersGenerator(model, tokenizer, batch_size=args.batch_size)


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
                         data_parallel_size=args.data_parallel_size, max_model_len=args.max_model_len,
                         gpu_memory_utilization=args.gpu_memory_utilization, extra_args=tuple(args.vllm_arg or ()))


def generate_predictions(args: argparse.Namespace, rows: list[dict[str, Any]], fields: Iterable[str],
                         record: Record, desc: str, sampling: Sampling | None = None) -> Path:
    """Generate a reply for every row (of this shard) not yet in the predictions file, appending as each
    finishes, greedy unless `sampling` says otherwise; or merge the shards' files into OUT/predictions.jsonl."""
    def generate(mine: list[dict[str, Any]], store) -> None:
        todo = pending(mine, store.done)
        print(f"{len(mine)} rows, {len(mine) - len(todo)} already in {store.path}, {len(todo)} to generate")
        if todo:
            with open_generator(args, store.path.parent) as generator:
                prompts = [inference_prompt(generator.tokenizer, row["messages"]) for row in todo]

                def save(index: int, result: Generated) -> None:
                    store.append(record(todo[index], prompts[index], result, generator))

                generator.generate(prompts, sampling or Sampling(max_new_tokens=args.max_new_tokens), on_done=save,
                                   desc=desc)
                engine.update(generator.engine())

    engine: dict[str, Any] = {}
    path = fill(args.workers, args.out, "predictions.jsonl", rows[: args.limit], fields, generate)
    args.engine = engine or None  # in config, so the scoring step's manifest keeps it too
    write_manifest(args.workers.dir(args.out), config=vars(args), inputs=[args.data, *(args.adapter or [])],
                   seed=None)
    return path


def load_runs(paths: list[str], names: list[str] | None) -> dict[str, dict[str, Any]]:
    """metrics.json files by run name (the given names, else each file's folder name)."""
    if names and len(names) != len(paths):
        raise UsageError("--names needs one name per metrics file")
    return {(names[i] if names else Path(p).parent.name): json.loads(Path(p).read_text(encoding="utf-8"))
            for i, p in enumerate(paths)}


SCORE_ONLY = ("PREDICTIONS", "score an existing predictions.jsonl")  # --score-only's metavar and help


def add_generation_args(parser: argparse.ArgumentParser, data_help: str, max_new_tokens: int,
                        score_only: tuple[str, str] = SCORE_ONLY) -> None:
    parser.add_argument("--model", help="merged checkpoint")
    parser.add_argument("--base", help="base checkpoint, with --adapter")
    parser.add_argument("--adapter", action="append", help="LoRA adapter applied on --base (repeat to chain)")
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--score-only", metavar=score_only[0], help=score_only[1])
    parser.add_argument("--compare", nargs="+", metavar="METRICS", help="print metrics.json files side by side")
    parser.add_argument("--names", nargs="+", help="column names for --compare")
    add_backend_args(parser)
    add_batch_size_arg(parser)
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--limit", type=int, help="score only the first N test rows")
    add_scale_out_args(parser)


def _batch_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_batch_size_arg(parser) -> None:
    """--batch-size of every command that generates (a parser or an argument group)."""
    parser.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH_SIZE,
                        help="rows per transformers generate call, grouped by prompt length; 1: one row at a "
                             "time (default: %(default)s; vLLM schedules its own batches)")


def add_backend_args(parser) -> None:
    """--backend, --dtype and the vLLM server's options, for every command that generates (a parser or a group)."""
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers",
                        help="transformers in this process, or vLLM's OpenAI-compatible server (default: %(default)s)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--server-url", action="append", metavar="URL",
                        help="with --backend vllm: a running vLLM server to use instead of starting one (repeat: "
                             "the rows are spread over every server; --model still gives the tokenizer)")
    parser.add_argument("--api-key-env", default=DEFAULT_API_KEY_ENV, metavar="NAME",
                        help="environment variable holding the servers' API key, if they need one "
                             "(default: %(default)s)")
    parser.add_argument("--vllm-python", metavar="PATH",
                        help="interpreter of the vLLM environment that starts the server (default: "
                             "$RECIPEKIT_VLLM_PYTHON, else .venv-vllm/bin/python)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, metavar="T",
                        help="GPUs one vLLM engine is split over (--backend vllm)")
    parser.add_argument("--data-parallel-size", type=int, default=1, metavar="D",
                        help="engine replicas inside the server this command starts (vLLM's data parallelism)")
    parser.add_argument("--max-model-len", type=int, metavar="TOKENS", help="the server's maximum prompt + reply")
    parser.add_argument("--gpu-memory-utilization", type=float, metavar="SHARE",
                        help="share of each GPU's memory the server may take (vLLM's default 0.9)")
    parser.add_argument("--vllm-arg", action="append", metavar="ARG",
                        help="one more option for the server this command starts, e.g. --vllm-arg=--enable-prefix-caching")
    parser.add_argument("--max-concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help="requests in flight per vLLM server (default: %(default)s)")


def add_text_metric_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bleu-tokenize", default="13a", help="sacrebleu tokenizer (13a, intl, char, flores200, ko-mecab...)")
    parser.add_argument("--bertscore-model", help="encoder for BERTScore (path or hub name)")
    parser.add_argument("--bertscore-layer", "--bertscore-layers", type=int, metavar="N",
                        help="hidden layer BERTScore reads (default: bert-score's recommended layer for the "
                             "model, or its last layer when bert-score does not list it, e.g. a local path)")
    parser.add_argument("--sbert-model", help="sentence-transformers model for SBERT cosine")


def scorer_parser(description: str, data_help: str, max_new_tokens: int, *, text_metrics: bool = False,
                  score_only: tuple[str, str] = SCORE_ONLY) -> argparse.ArgumentParser:
    """A scorer's command line: generation (or --score-only, --compare) and, with `text_metrics`, the
    text metrics' settings."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(parser, data_help, max_new_tokens, score_only)
    if text_metrics:
        add_text_metric_args(parser)
    return parser


def run_scorer(args: argparse.Namespace, generate: Callable[[argparse.Namespace], Path],
               score: Callable[[Path | str, Path | str, argparse.Namespace], dict[str, Any]],
               markdown: Callable[[dict[str, dict[str, Any]]], str]) -> int:
    """--compare, --score-only, or generate then score."""
    if args.compare:
        print(markdown(load_runs(args.compare, args.names)))
        return 0
    if not args.out:
        raise UsageError("--out is required")
    check_model_args(args, "bertscore_model", "sbert_model", *(() if args.score_only else ("model", "base", "adapter")))
    if getattr(args, "bertscore_model", None):  # a bad layer fails now, not after a long generation
        args.bertscore_layer = resolve_bertscore_layer(args.bertscore_model, args.bertscore_layer)
    if args.score_only:
        predictions = args.score_only
    else:
        if not args.data:
            raise UsageError("--data is required to generate (or pass --score-only)")
        predictions = generate(args)
        if args.workers.shard:  # scored once every shard is in
            print(f"shard {args.workers.shard}: {predictions}; score with --merge-shards {args.workers.shard.count}")
            return 0
    metrics = score(predictions, args.out, args)
    refresh_card(args.model, [Path(args.out) / "metrics.json"])  # a local checkpoint's card gets the new metrics
    print(markdown({Path(args.out).name: metrics}))
    return 0
