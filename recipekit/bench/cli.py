"""Run benchmark suites and write one report (OUT.json + OUT.md).

    python bench/run.py --suite packing --out bench/results/packing
    python bench/run.py --suite all --tiny --out bench/results/cpu_tiny
    python bench/run.py --suite train --model-config bench/configs/gemma-4-12B-it.json --out bench/results/h100_train
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recipekit.bench import suites
from recipekit.bench.flops import peak_tflops_for
from recipekit.bench.lengths import spec_record
from recipekit.bench.model_build import BenchError, load_text_config
from recipekit.bench.report import CPU_LABEL, environment, write_report
from recipekit.cli import command

SUITES = ("packing", "train", "generate")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=SUITES + ("all",), default="all")
    parser.add_argument("--out", type=Path, required=True, help="report path without extension")
    parser.add_argument("--tiny", action="store_true", help="tiny Gemma 4 and a few short rows: a CPU code-path check")
    parser.add_argument("--model-config", type=Path, help="config.json of the model to build (needed without --tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-len", type=int, help="default 4096 (128 with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed passes per variant (default 3, 1 with --tiny)")
    parser.add_argument("--steps", type=int, help="timed passes per variant (default 20, 3 with --tiny)")
    parser.add_argument("--rows", type=int, help="scoring rows (default 199, 5 with --tiny)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per scored row (default 900, 4 with --tiny)")
    parser.add_argument("--batch-size", type=int, help="batched scoring batch size (default 64, 2 with --tiny)")
    parser.add_argument("--loop-rows", type=int,
                        help="rows timed one at a time, then extrapolated (default 8, 2 with --tiny)")
    return parser.parse_args(argv)


def _pick(value, full, tiny, is_tiny):
    return value if value is not None else (tiny if is_tiny else full)


@command
def main(argv: list[str] | None = None) -> int:
    import torch

    args = _parse(argv)
    chosen = SUITES if args.suite == "all" else (args.suite,)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = environment()
    peak = peak_tflops_for(env["device"]) if env["cuda"] else None
    report = {"environment": env, "suites": list(chosen), "tiny": args.tiny,
              "label": CPU_LABEL if (args.tiny or device == "cpu") and {"train", "generate"} & set(chosen) else None}
    sections = []
    try:
        config = load_text_config(args.model_config, args.tiny) if {"train", "generate"} & set(chosen) else None
        if "packing" in chosen:
            report["packing"] = suites.packing_suite(seed=args.seed)
            sections.append(("Packing (no model; Axolotl's MultipackBatchSampler)",
                             suites.packing_markdown(report["packing"])))
        if "train" in chosen:
            from recipekit.bench.throughput import run_training_suite

            spec, lengths = suites.training_lengths(args.tiny)
            section = run_training_suite(
                config, lengths, sequence_len=_pick(args.sequence_len, 4096, 128, args.tiny), device=device,
                dtype=dtype, warmup=_pick(args.warmup, 3, 1, args.tiny), steps=_pick(args.steps, 20, 3, args.tiny),
                seed=args.seed, peak_tflops=peak[1] if peak else None, versus_card=not args.tiny)
            report["train"] = {**section, "lengths": spec_record(spec), "model_type": config.model_type}
            sections.append(("Training throughput (LoRA r=16, all linear layers)",
                             suites.training_markdown(report["train"])))
        if "generate" in chosen:
            from recipekit.bench.generation_speed import run_generation_suite

            spec, lengths = suites.prompt_lengths(args.tiny, args.rows)
            section = run_generation_suite(
                config, lengths, new_tokens=_pick(args.new_tokens, 900, 4, args.tiny),
                batch_size=_pick(args.batch_size, 64, 2, args.tiny), loop_rows=_pick(args.loop_rows, 8, 2, args.tiny),
                device=device, dtype=dtype, seed=args.seed)
            report["generate"] = {**section, "lengths": spec_record(spec), "model_type": config.model_type}
            sections.append(("Scoring throughput", suites.generation_markdown(report["generate"])))
    except ValueError as err:  # lengths or step counts the options ask for that cannot run
        raise BenchError(str(err)) from err
    json_path, md_path = write_report(args.out, "Benchmark report", report, sections)
    print(Path(md_path).read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
