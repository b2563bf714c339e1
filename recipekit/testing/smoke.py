"""Train any recipe for a few steps on CPU through the real `axolotl train` CLI.

The recipe is loaded unchanged and overrides are layered on top: the tiny model of the
same family as its base model, fixture data in place of each dataset path, a short
sequence length, a handful of steps, and the CPU switches. The run must finish, write its
output, and log finite training losses.

    python -m recipekit.testing.smoke recipes/supervisor_stage1.yml --steps 3
    python -m recipekit.testing.smoke recipes/cs_chatbot_gemma3_4b.yml --steps 2 --nproc 2   # DDP over 2 CPU processes
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipekit.checkpoints.load import attention_implementation, complete_checkpoints
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.offline import offline_env
from recipekit.testing.tiny_models import family_for_base_model, tiny_model_path
from recipekit.training.recipe_config import DELETE, apply_overrides, cpu_overrides, dump_config, load_recipe

SMOKE_MAP = FIXTURES_DIR / "smoke.yml"
SMOKE_STEPS = 3  # optimiser steps of a smoke run unless told otherwise
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
# declares `processor_config`, which Axolotl reads but its schema would drop
PROCESSOR_PLUGIN = "recipekit.testing.smoke_plugin.ProcessorConfigPlugin"
# Switches of the trackers that need an account and the network; TensorBoard (local files) stays on.
HOSTED_TRACKER_KEYS = ("use_wandb", "wandb_project", "use_mlflow", "mlflow_experiment_name", "mlflow_tracking_uri",
                       "use_comet", "comet_project_name")
_LOG_DICT = re.compile(r"\{'(?:loss|train_loss)'.*?\}")


class SmokeError(RuntimeError):
    """The recipe could not be trained, or the run did not show what it must."""


@dataclass
class SmokeResult:
    recipe: Path
    config_path: Path
    output_dir: Path
    losses: list[float]
    log_path: Path
    log_records: list[dict[str, Any]] = field(default_factory=list)


def _smoke_map() -> dict[str, Any]:
    return yaml.safe_load(SMOKE_MAP.read_text(encoding="utf-8")) or {}


def resolve_tiny_model(recipe_path: Path, config: dict[str, Any]) -> str:
    """The tiny model of the recipe's family (seq-cls for reward models)."""
    base = str(config.get("base_model", ""))
    family = (_smoke_map().get("families") or {}).get(base)
    if family is None:
        try:
            family = family_for_base_model(base)
        except KeyError as err:
            raise SmokeError(f"{recipe_path}: {err}; add the base model to {SMOKE_MAP.name} 'families'") from err
    task = "seq_cls" if config.get("reward_model") or config.get("process_reward_model") else "causal_lm"
    return str(tiny_model_path(family, task))


def resolve_fixtures(recipe_path: Path, config: dict[str, Any]) -> list[str]:
    """The fixture file standing in for each of the recipe's dataset paths, in order."""
    mapping = _smoke_map().get("datasets") or {}
    fixtures = []
    for index, entry in enumerate(config.get("datasets") or []):
        source = str(entry.get("path"))
        if source not in mapping:
            raise SmokeError(f"{recipe_path}: datasets[{index}].path {source!r} has no fixture; map it in {SMOKE_MAP}")
        fixtures.append(str(FIXTURES_DIR / mapping[source]))
    return fixtures


def tokenizer_as_processor(base_model: str, workdir: Path) -> str | None:
    """A directory holding only the tokenizer, when the checkpoint's processor cannot load here.

    Axolotl loads the processor of every model type it counts as multimodal (Gemma 3,
    Gemma 4), even for text-only data, and then only saves it beside the adapter. Gemma 4's
    image processor imports torchvision, which has no build for the CPU torch of
    requirements.txt (requirements-gpu.txt installs it on a GPU machine); Gemma 3's loads
    with its PIL image processor, so it keeps its real processor on CPU too.
    """
    from recipekit.checkpoints.load import PROCESSOR_FILES

    if not any((Path(base_model) / name).is_file() for name in PROCESSOR_FILES):
        return None
    from transformers import AutoProcessor, AutoTokenizer

    try:
        AutoProcessor.from_pretrained(base_model)
        return None
    except ImportError:
        tokenizer_only = workdir / "processor_tokenizer_only"
        AutoTokenizer.from_pretrained(base_model).save_pretrained(tokenizer_only)
        return str(tokenizer_only)


def cpu_run_overrides(config: dict[str, Any], *, base_model: str, dataset_paths: list[str], workdir: Path,
                      steps: int, sequence_len: int = 256, micro_batch_size: int = 2) -> dict[str, Any]:
    """Overrides for a short CPU run of `config`: model, data, length, steps, CPU switches.

    Everything else in the recipe (template, masking, adapter, optimiser, schedule type,
    added tokens) is kept, so the short run exercises the recipe's own code paths.
    """
    datasets = [{**entry, "path": path} for entry, path in zip(config.get("datasets") or [], dataset_paths)]
    switches = cpu_overrides(config)
    # A CUDA kernel swapped out: keep applying a soft-cap (Gemma 2). A model that is not on disk
    # is left for Axolotl to report, after its config checks.
    if "attn_implementation" in switches and (Path(base_model) / "config.json").is_file():
        from transformers import AutoConfig

        capped = attention_implementation(AutoConfig.from_pretrained(base_model), "cpu", None)
        switches["attn_implementation"] = capped or switches["attn_implementation"]
    processor = tokenizer_as_processor(base_model, workdir)
    if processor is not None:
        plugins = switches.get("plugins", config.get("plugins"))
        switches["plugins"] = [*(plugins if isinstance(plugins, list) else []), PROCESSOR_PLUGIN]
        switches["processor_config"] = processor
    return {
        **switches,
        "base_model": base_model,
        "base_model_config": DELETE,
        "tokenizer_config": DELETE,
        "datasets": datasets,
        "test_datasets": DELETE,
        "val_set_size": 0.0,
        "sequence_len": min(int(config.get("sequence_len", sequence_len)), sequence_len),
        "max_steps": steps,
        "micro_batch_size": min(int(config.get("micro_batch_size", 1)), micro_batch_size),
        "gradient_accumulation_steps": 1,
        "warmup_steps": DELETE,
        "warmup_ratio": DELETE,
        "output_dir": str(workdir / "output"),
        "dataset_prepared_path": str(workdir / "prepared"),
        "save_strategy": "no",
        "save_steps": DELETE,
        "eval_strategy": DELETE,
        "evals_per_epoch": DELETE,
        "eval_steps": DELETE,
        "logging_steps": 1,
        "hub_model_id": DELETE,
        "hub_strategy": DELETE,
        "push_dataset_to_hub": DELETE,
        **{key: DELETE for key in HOSTED_TRACKER_KEYS},
        "dataset_num_proc": 1,
    }


def smoke_overrides(recipe_path: Path, config: dict[str, Any], workdir: Path, steps: int) -> dict[str, Any]:
    """Every override the smoke run applies to `config`, CPU switches included."""
    return cpu_run_overrides(config, base_model=resolve_tiny_model(recipe_path, config),
                             dataset_paths=resolve_fixtures(recipe_path, config), workdir=workdir, steps=steps)


def parse_log_records(text: str) -> list[dict[str, Any]]:
    """The metric dicts the Hugging Face trainer prints, in order."""
    records = []
    for match in _LOG_DICT.finditer(text):
        try:
            records.append(ast.literal_eval(match.group(0)))
        except (ValueError, SyntaxError):
            continue
    return records


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def axolotl_command(command: str, config_path: Path, options: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The `axolotl COMMAND CONFIG [OPTIONS]` command line of this environment, and its offline environment."""
    env = offline_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return [str(Path(sys.executable).parent / "axolotl"), command, str(config_path), *options], env


def run_axolotl(command: str, config_path: Path, log_path: Path, cwd: Path, timeout: int = 1200,
                options: Sequence[str] = ()) -> str:
    """Run `axolotl COMMAND CONFIG [OPTIONS]` in a subprocess; return its combined output."""
    argv, env = axolotl_command(command, config_path, options)
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    log_path.write_text(output, encoding="utf-8")
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise SmokeError(f"axolotl {command} {config_path} exited {done.returncode}; log {log_path}\n{tail}")
    return output


def run_axolotl_train(config_path: Path, log_path: Path, cwd: Path, timeout: int = 1200,
                      options: Sequence[str] = ()) -> str:
    return run_axolotl("train", config_path, log_path, cwd, timeout, options)


def launch_options(nproc: int) -> list[str]:
    """`axolotl train` options that start `nproc` processes on this machine with torchrun.

    Not accelerate: `accelerate launch --cpu` starts one process per machine unless given an MPI hostfile.
    """
    return ["--launcher", "torchrun", "--", "--standalone", "--nproc_per_node", str(nproc)]


def kill_when(command: list[str], ready: Callable[[], bool], *, cwd: Path, log_path: Path,
              env: dict[str, str] | None = None, timeout: int = 1200) -> None:
    """Run `command` in a process group of its own and SIGKILL the group as soon as `ready()`
    holds, as a crash would; an error if it ends by itself first."""
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready() and process.poll() is None:
                if time.monotonic() > deadline:
                    raise SmokeError(f"{' '.join(command)}: still running after {timeout} s; log {log_path}")
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != -signal.SIGKILL:
        raise SmokeError(f"{' '.join(command)} ended with exit {process.returncode} before it was killed; log {log_path}")


def write_run_config(recipe: Path, workdir: Path, overrides: dict[str, Any], nproc: int = 1) -> tuple[dict[str, Any], Path]:
    """The recipe plus `overrides` (and, for `nproc` > 1, the data-parallel plugin), written as WORKDIR/NAME.run.yml."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = apply_overrides(load_recipe(recipe), overrides)
    if nproc > 1:
        from recipekit.testing.cpu_parallel import DATA_PARALLEL_PLUGIN

        config["plugins"] = [*(config.get("plugins") or []), DATA_PARALLEL_PLUGIN]
    return config, dump_config(config, workdir / f"{recipe.stem}.run.yml", source=recipe)


def train_with_overrides(recipe: str | Path, workdir: str | Path, overrides: dict[str, Any],
                         nproc: int = 1) -> SmokeResult:
    """`axolotl train` on the recipe plus `overrides`; check it logged finite losses and wrote weights.

    With `nproc` > 1 it is one data-parallel run of that many CPU processes (torchrun, gloo),
    after `axolotl preprocess`, as on several GPUs (recipes/launch/README.md).
    """
    recipe = Path(recipe)
    workdir = Path(workdir)
    config, config_path = write_run_config(recipe, workdir, overrides, nproc)
    # One process trains inside the `axolotl` process itself: the default launcher would start
    # `accelerate launch` only to start it (seconds of imports per run). Axolotl's default launcher
    # stays covered by kill_after_checkpoint and tests/training/test_launch.py.
    options = ["--launcher", "python"]
    if nproc > 1:  # prepared once, so every rank reads the same rows from disk
        run_axolotl("preprocess", config_path, workdir / "axolotl_preprocess.log", cwd=workdir)
        options = launch_options(nproc)
    log_path = workdir / "axolotl_train.log"
    output = run_axolotl_train(config_path, log_path, cwd=workdir, options=options)

    records = parse_log_records(output)
    losses = [_as_float(r["loss"]) for r in records if "loss" in r]
    output_dir = Path(config["output_dir"])
    if not losses:
        raise SmokeError(f"{recipe}: no training loss was logged; see {log_path}")
    if not all(math.isfinite(x) for x in losses):
        raise SmokeError(f"{recipe}: non-finite training loss {losses}; see {log_path}")
    if not any((output_dir / name).exists() for name in WEIGHT_FILES):
        raise SmokeError(f"{recipe}: no weights written to {output_dir}; see {log_path}")
    return SmokeResult(recipe, config_path, output_dir, losses, log_path, records)


def kill_after_checkpoint(recipe: str | Path, workdir: str | Path, overrides: dict[str, Any], step: int) -> int:
    """`axolotl train` as train_with_overrides runs it, SIGKILLed once it has saved a complete
    checkpoint at `step` or later; returns the step of its last complete checkpoint."""
    recipe, workdir = Path(recipe), Path(workdir)
    config, config_path = write_run_config(recipe, workdir, overrides)
    output_dir = Path(config["output_dir"])
    command, env = axolotl_command("train", config_path)
    kill_when(command, lambda: max(complete_checkpoints(output_dir), default=0) >= step, cwd=workdir, env=env,
              log_path=workdir / "axolotl_killed.log")
    return max(complete_checkpoints(output_dir))


def smoke_train(
    recipe: str | Path, workdir: str | Path, steps: int = SMOKE_STEPS, extra: dict[str, Any] | None = None, nproc: int = 1
) -> SmokeResult:
    """A few CPU steps of `recipe` on its tiny model and fixture data, in `nproc` data-parallel processes."""
    recipe, workdir = Path(recipe), Path(workdir)
    overrides = smoke_overrides(recipe, load_recipe(recipe), workdir, steps)
    overrides.update(extra or {})
    return train_with_overrides(recipe, workdir, overrides, nproc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--steps", type=int, default=SMOKE_STEPS)
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary directory)")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel CPU processes (torchrun, gloo)")
    args = parser.parse_args(argv)
    if args.workdir:
        result = smoke_train(args.recipe, args.workdir, args.steps, nproc=args.nproc)
    else:
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            result = smoke_train(args.recipe, tmp, args.steps, nproc=args.nproc)
    print(f"{args.recipe}: {len(result.losses)} logged steps, losses {['%.4f' % x for x in result.losses]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
