"""Train any recipe for a few steps on CPU through the real `axolotl train` CLI.

The recipe is loaded unchanged and overrides are layered on top: the tiny model of the
same family as its base model, fixture data in place of each dataset path, a short
sequence length, a handful of steps, and the CPU switches. The run must finish, write its
output, and log finite training losses.

    python -m recipekit.testing.smoke recipes/supervisor_stage1.yml --steps 3
    python -m recipekit.testing.smoke recipes/cs_chatbot_gemma3_4b.yml --steps 2 --nproc 2   # DDP over 2 CPU processes
    python -m recipekit.testing.smoke recipes/supervisor_stage1.yml --nproc 2 --launch recipes/launch/fsdp2.yml
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipekit.checkpoints.load import complete_checkpoints
from recipekit.cli import command
from recipekit.errors import RecipekitError
from recipekit.paths import REPO_ROOT
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.offline import offline_env
from recipekit.testing.tiny_models import family_for_base_model, tiny_model_path
from recipekit.training.cpu_overrides import short_run_overrides
from recipekit.training.recipe_config import apply_overrides, dump_config, load_recipe
from recipekit.training.runner import check_training, launch_options, preprocess_options, run_axolotl

SMOKE_MAP = FIXTURES_DIR / "smoke.yml"
SMOKE_STEPS = 3  # optimiser steps of a smoke run unless told otherwise
AXOLOTL_TIMEOUT = 1200  # seconds an axolotl command of a smoke run may take before it is killed
# declares `processor_config`, which Axolotl reads but its schema would drop
PROCESSOR_PLUGIN = "recipekit.testing.smoke_plugin.ProcessorConfigPlugin"


class SmokeError(RecipekitError, RuntimeError):
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
    """The shared short CPU run's overrides (recipekit.training.cpu_overrides), plus a tokenizer-only
    processor where the model's own cannot load here."""
    overrides = short_run_overrides(config, base_model=base_model, dataset_paths=dataset_paths, workdir=workdir,
                                    steps=steps, sequence_len=sequence_len, micro_batch_size=micro_batch_size)
    processor = tokenizer_as_processor(base_model, workdir)
    if processor is not None:
        plugins = overrides.get("plugins", config.get("plugins"))
        overrides["plugins"] = [*(plugins if isinstance(plugins, list) else []), PROCESSOR_PLUGIN]
        overrides["processor_config"] = processor
    return overrides


def smoke_overrides(recipe_path: Path, config: dict[str, Any], workdir: Path, steps: int) -> dict[str, Any]:
    """Every override the smoke run applies to `config`, CPU switches included."""
    return cpu_run_overrides(config, base_model=resolve_tiny_model(recipe_path, config),
                             dataset_paths=resolve_fixtures(recipe_path, config), workdir=workdir, steps=steps)


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
    if isinstance(config.get("deepspeed"), str):  # recipes name launcher files from the repository root
        config["deepspeed"] = str(REPO_ROOT / config["deepspeed"])
    if nproc > 1:  # first: the other plugins' hooks then see this rank's place in the job (is_world_process_zero)
        from recipekit.testing.cpu_parallel import DATA_PARALLEL_PLUGIN

        config["plugins"] = [DATA_PARALLEL_PLUGIN, *(config.get("plugins") or [])]
    return config, dump_config(config, workdir / f"{recipe.stem}.run.yml", source=recipe)


def _launch_train(config: dict[str, Any], config_path: Path, log_path: Path, nproc: int,
                  env: dict[str, str] | None = None, expected_status: int = 0) -> str:
    """`axolotl train` of a written run config in `nproc` processes; its output."""
    run = {"cwd": config_path.parent, "timeout": AXOLOTL_TIMEOUT, "error": SmokeError}
    # One process trains inside the `axolotl` process itself: the default launcher would start
    # `accelerate launch` only to start it (seconds of imports per run). Axolotl's default launcher
    # stays covered by tests/training/test_launch.py.
    options = ["--launcher", "python"]
    if nproc > 1:  # prepared once, so every rank reads the same rows from disk
        run_axolotl("preprocess", config_path, config_path.parent / "axolotl_preprocess.log",
                    options=preprocess_options(config), env=offline_env(), **run)
        options = launch_options(nproc)
    return run_axolotl("train", config_path, log_path, options=options, env={**offline_env(), **(env or {})},
                       expected_status=expected_status, **run)


def train_with_overrides(recipe: str | Path, workdir: str | Path, overrides: dict[str, Any],
                         nproc: int = 1) -> SmokeResult:
    """`axolotl train` on the recipe plus `overrides`; check it logged finite losses and wrote weights.

    With `nproc` > 1 it is one data-parallel run of that many CPU processes (torchrun, gloo),
    after `axolotl preprocess`, as on several GPUs (recipes/launch/README.md).
    """
    recipe = Path(recipe)
    workdir = Path(workdir)
    config, config_path = write_run_config(recipe, workdir, overrides, nproc)
    log_path = workdir / "axolotl_train.log"
    output = _launch_train(config, config_path, log_path, nproc)
    output_dir = Path(config["output_dir"])
    records, losses = check_training(output, output_dir, log_path, str(recipe), SmokeError)
    return SmokeResult(recipe, config_path, output_dir, losses, log_path, records)


def kill_after_checkpoint(recipe: str | Path, workdir: str | Path, overrides: dict[str, Any], step: int,
                          nproc: int = 1) -> int:
    """`axolotl train` as train_with_overrides runs it, killed (SIGKILL, by its own hand, every rank:
    see recipekit/testing/crash.py) right after it saved the checkpoint of `step`; returns that step."""
    from recipekit.testing.crash import CRASH_PLUGIN, CRASH_STEP_VAR

    recipe, workdir = Path(recipe), Path(workdir)
    plugins = [*(apply_overrides(load_recipe(recipe), overrides).get("plugins") or []), CRASH_PLUGIN]
    config, config_path = write_run_config(recipe, workdir, {**overrides, "plugins": plugins}, nproc)
    log_path = workdir / "axolotl_killed.log"
    # one process dies of the signal itself; torchrun exits 1 when its workers were killed
    output = _launch_train(config, config_path, log_path, nproc, env={CRASH_STEP_VAR: str(step)},
                           expected_status=-signal.SIGKILL if nproc == 1 else 1)
    if nproc > 1 and "exitcode  : -9 " not in output:
        raise SmokeError(f"torchrun exited 1 but reports no rank killed (exit code -9); log {log_path}")
    return max(complete_checkpoints(Path(config["output_dir"])))


def smoke_train(
    recipe: str | Path, workdir: str | Path, steps: int = SMOKE_STEPS, extra: dict[str, Any] | None = None, nproc: int = 1
) -> SmokeResult:
    """A few CPU steps of `recipe` on its tiny model and fixture data, in `nproc` data-parallel processes."""
    recipe, workdir = Path(recipe), Path(workdir)
    overrides = smoke_overrides(recipe, load_recipe(recipe), workdir, steps)
    overrides.update(extra or {})
    return train_with_overrides(recipe, workdir, overrides, nproc)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--steps", type=int, default=SMOKE_STEPS)
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary directory)")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel CPU processes (torchrun, gloo)")
    parser.add_argument("--launch", type=Path, help="a launcher file of recipes/launch/ (DeepSpeed or FSDP2) "
                                                    "for the --nproc processes")
    args = parser.parse_args(argv)
    extra = None
    if args.launch:
        from recipekit.training.launch_check import launch_overrides  # imports Axolotl

        extra = launch_overrides(args.launch)
    if args.workdir:
        result = smoke_train(args.recipe, args.workdir, args.steps, extra, nproc=args.nproc)
    else:
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            result = smoke_train(args.recipe, tmp, args.steps, extra, nproc=args.nproc)
    print(f"{args.recipe}: {len(result.losses)} logged steps, losses {['%.4f' % x for x in result.losses]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
