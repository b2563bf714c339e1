"""Train any recipe for a few steps on CPU through the real `axolotl train` CLI.

The recipe is loaded unchanged and overrides are layered on top: the tiny model of the
same family as its base model, fixture data in place of each dataset path, a short
sequence length, a handful of steps, and the CPU switches. The run must finish, write its
output, and log finite training losses.

    python -m recipekit.smoke recipes/supervisor_stage1.yml --steps 3
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipekit.offline import offline_env
from recipekit.paths import FIXTURES_DIR, REPO_ROOT
from recipekit.recipe_config import DELETE, apply_overrides, cpu_overrides, dump_config, load_recipe
from recipekit.tiny_models import family_for_base_model, tiny_model_path

SMOKE_MAP = FIXTURES_DIR / "smoke.yml"
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
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


def smoke_overrides(recipe_path: Path, config: dict[str, Any], workdir: Path, steps: int) -> dict[str, Any]:
    """Every override the smoke run applies to `config`, CPU switches included."""
    mapping = _smoke_map()
    base = str(config.get("base_model", ""))
    family = (mapping.get("families") or {}).get(base)
    if family is None:
        try:
            family = family_for_base_model(base)
        except KeyError as err:
            raise SmokeError(f"{recipe_path}: {err}; add the base model to {SMOKE_MAP.name} 'families'") from err
    task = "seq_cls" if config.get("reward_model") or config.get("process_reward_model") else "causal_lm"
    tiny = str(tiny_model_path(family, task))

    datasets = []
    for index, entry in enumerate(config.get("datasets") or []):
        source = str(entry.get("path"))
        fixture = (mapping.get("datasets") or {}).get(source)
        if fixture is None:
            raise SmokeError(
                f"{recipe_path}: datasets[{index}].path {source!r} has no fixture; map it in {SMOKE_MAP}"
            )
        datasets.append({**entry, "path": str(REPO_ROOT / fixture)})

    overrides: dict[str, Any] = {
        **cpu_overrides(config),
        "base_model": tiny,
        "base_model_config": DELETE,
        "tokenizer_config": DELETE,
        "datasets": datasets,
        "test_datasets": DELETE,
        "val_set_size": 0.0,
        "sequence_len": min(int(config.get("sequence_len", 256)), 256),
        "max_steps": steps,
        "micro_batch_size": min(int(config.get("micro_batch_size", 1)), 2),
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
        "use_wandb": DELETE,
        "wandb_project": DELETE,
        "dataset_num_proc": 1,
    }
    return overrides


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


def run_axolotl_train(config_path: Path, log_path: Path, cwd: Path, timeout: int = 1200) -> str:
    """Run `axolotl train CONFIG` in a subprocess; return its combined output."""
    env = offline_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(Path(sys.executable).parent / "axolotl"), "train", str(config_path)]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    log_path.write_text(output, encoding="utf-8")
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise SmokeError(f"axolotl train {config_path} exited {done.returncode}; log {log_path}\n{tail}")
    return output


def smoke_train(
    recipe: str | Path, workdir: str | Path, steps: int = 3, extra: dict[str, Any] | None = None
) -> SmokeResult:
    recipe = Path(recipe)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_recipe(recipe)
    overrides = smoke_overrides(recipe, config, workdir, steps)
    overrides.update(extra or {})
    config_path = dump_config(apply_overrides(config, overrides), workdir / f"{recipe.stem}.smoke.yml")
    log_path = workdir / "axolotl_train.log"
    output = run_axolotl_train(config_path, log_path, cwd=workdir)

    records = parse_log_records(output)
    losses = [_as_float(r["loss"]) for r in records if "loss" in r]
    output_dir = workdir / "output"
    if not losses:
        raise SmokeError(f"{recipe}: no training loss was logged; see {log_path}")
    if not all(math.isfinite(x) for x in losses):
        raise SmokeError(f"{recipe}: non-finite training loss {losses}; see {log_path}")
    if not any((output_dir / name).exists() for name in WEIGHT_FILES):
        raise SmokeError(f"{recipe}: no weights written to {output_dir}; see {log_path}")
    return SmokeResult(recipe, config_path, output_dir, losses, log_path, records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.workdir:
        result = smoke_train(args.recipe, args.workdir, args.steps)
    else:
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            result = smoke_train(args.recipe, tmp, args.steps)
    print(f"{args.recipe}: {len(result.losses)} logged steps, losses {['%.4f' % x for x in result.losses]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
