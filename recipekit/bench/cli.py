"""Run benchmark suites and write one report (OUT.json + OUT.md).

    python bench/run.py --suite packing --out bench/results/packing
    python bench/run.py --suite all --tiny --out bench/results/cpu_tiny
    python bench/run.py --suite train --model-config bench/configs/gemma-4-12B-it.config.json --out bench/results/h100_train
    python bench/run.py --combine OUT/parts/train.json OUT/parts/generate.json --out OUT/report
    python bench/run.py --suite prep --out bench/results/prep_speed

--combine writes one report (and a manifest.json beside it) from the reports of earlier runs,
each run in its own process so that one that fails or runs out of time loses only its own part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipekit.bench import suites
from recipekit.bench.combine import combine_reports
from recipekit.bench.flops import peak_tflops_for
from recipekit.bench.lengths import spec_record
from recipekit.bench.model_build import BenchError, check_architecture, load_text_config
from recipekit.bench.projection import ARCHITECTURES
from recipekit.bench.report import CPU_LABEL, environment, write_report
from recipekit.cli import command

SUITES = ("packing", "train", "generate")  # `all`; the preprocessor suite runs on its own (minutes, no model)


def _variant_names(suite: str) -> list[str]:
    from recipekit.bench.generation_speed import GEN_VARIANTS
    from recipekit.bench.throughput import TRAIN_VARIANTS

    return [v.name for v in {"train": TRAIN_VARIANTS, "generate": GEN_VARIANTS}.get(suite, ())]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=SUITES + ("prep", "all"), default="all")
    parser.add_argument("--out", type=Path, required=True, help="report path without extension")
    parser.add_argument("--tiny", action="store_true", help="a few short rows (and the tiny Gemma 4 unless --model-config names "
                                                               "another): a CPU run")
    parser.add_argument("--model-config", type=Path, help="config.json of the model to build (needed without --tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-len", type=int, help="default 4096 (128 with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed passes per variant (default 3, 1 with --tiny)")
    parser.add_argument("--steps", type=int, help="timed passes per variant (default 20, 3 with --tiny)")
    parser.add_argument("--rows", type=int, help="scoring rows (default 199, 5 with --tiny)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per scored row (default 900, 4 with --tiny)")
    parser.add_argument("--batch-size", type=int, help="batched scoring batch size (default 64, 2 with --tiny)")
    parser.add_argument("--prep-rows", default="20000,200000",
                        help="input sizes of the prep suite, comma-separated (default %(default)s)")
    parser.add_argument("--repeats", type=int,
                        help="timed passes per transformers scoring variant, taking turns; the fastest is kept "
                             "(default 1, 3 with --tiny)")
    parser.add_argument("--loop-rows", type=int,
                        help="rows timed one at a time, then extrapolated (default 8, every row with --tiny)")
    parser.add_argument("--variants", type=lambda text: [n for n in text.split(",") if n],
                        help="comma-separated variants to run (default: every variant of the suites chosen)")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES),
                        help="refuse a --model-config whose layers, hidden size or vocabulary are not this model's")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="PART.json",
                        help="write one report from these reports of earlier runs instead of running suites")
    args = parser.parse_args(argv)
    if args.variants is not None:
        chosen = SUITES if args.suite == "all" else (args.suite,)
        known = [name for suite in chosen for name in _variant_names(suite)]
        unknown = [name for name in args.variants if name not in known]
        if unknown or not args.variants:
            parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; "
                         f"suite {args.suite!r} has {', '.join(known) or 'no variants'}")
    return args


def _pick(value, full, tiny, is_tiny):
    return value if value is not None else (tiny if is_tiny else full)


def _only(variants, names):
    return variants if names is None else tuple(v for v in variants if v.name in names)


@command
def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.combine:
        json_path, md_path = combine_reports(args.out, args.combine, argv=sys.argv if argv is None else argv)
        print(Path(md_path).read_text(encoding="utf-8"))
        print(f"wrote {json_path}, {md_path} and {json_path.parent / 'manifest.json'}")
        return 0
    chosen = SUITES if args.suite == "all" else (args.suite,)
    try:
        prep_rows = tuple(int(n) for n in args.prep_rows.split(","))
    except ValueError as err:
        raise BenchError(f"--prep-rows {args.prep_rows!r} is not a comma-separated list of row counts") from err
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    env = environment()
    peak = peak_tflops_for(env["device"]) if env["cuda"] else None
    report = {"environment": env, "suites": list(chosen), "tiny": args.tiny,
              "label": CPU_LABEL if (args.tiny or device == "cpu") and {"train", "generate"} & set(chosen) else None}
    try:
        config = load_text_config(args.model_config, args.tiny) if {"train", "generate"} & set(chosen) else None
        if config is not None and args.architecture:
            check_architecture(config, args.architecture)
        if "packing" in chosen:
            report["packing"] = suites.packing_suite(seed=args.seed)
        if "prep" in chosen:
            from recipekit.bench.prep_speed import prep_suite

            report["prep"] = prep_suite(prep_rows, seed=args.seed)
        if "train" in chosen:
            from recipekit.bench.throughput import TRAIN_VARIANTS, run_training_suite

            spec, lengths = suites.training_lengths(args.tiny)
            section = run_training_suite(
                config, lengths, sequence_len=_pick(args.sequence_len, 4096, 128, args.tiny), device=device,
                dtype=dtype, warmup=_pick(args.warmup, 3, 1, args.tiny), steps=_pick(args.steps, 20, 3, args.tiny),
                seed=args.seed, peak_tflops=peak[1] if peak else None, versus_card=not args.tiny,
                variants=_only(TRAIN_VARIANTS, args.variants))
            report["train"] = {**section, "lengths": spec_record(spec), "model_type": config.model_type}
        if "generate" in chosen:
            from recipekit.bench.generation_speed import GEN_VARIANTS, run_generation_suite

            spec, lengths = suites.prompt_lengths(args.tiny, args.rows)
            section = run_generation_suite(
                config, lengths, new_tokens=_pick(args.new_tokens, 900, 4, args.tiny),
                batch_size=_pick(args.batch_size, 64, 2, args.tiny), loop_rows=_pick(args.loop_rows, 8, None, args.tiny),
                repeats=_pick(args.repeats, 1, 3, args.tiny),
                device=device, dtype=dtype, seed=args.seed, variants=_only(GEN_VARIANTS, args.variants))
            report["generate"] = {**section, "lengths": spec_record(spec), "model_type": config.model_type}
    except ValueError as err:  # lengths or step counts the options ask for that cannot run
        raise BenchError(str(err)) from err
    json_path, md_path = write_report(args.out, "Benchmark report", report, suites.suite_sections(report))
    print(Path(md_path).read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
