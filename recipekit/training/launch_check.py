"""Which recipe can run under which launcher, decided before any model is loaded.

Axolotl's own config validation already refuses some pairs (Muon under DeepSpeed,
bitsandbytes' 8-bit AdamW under FSDP2); `launch_problems` adds the pairs it lets through
although they cannot train as the recipe says. The rules run in two places:

- inside `axolotl train`: every recipe lists `LaunchCheckPlugin`, which adds them to
  Axolotl's config validation, so a bad pair stops within seconds, before any dataset or
  model is loaded;
- by hand, before a job is queued; for a pair that can run it prints the command:

    python -m recipekit.training.launch_check --config recipes/sppo_gemma2_9b.yml --launch recipes/launch/zero3.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel, model_validator

from recipekit.cli import command
from recipekit.paths import LAUNCH_DIR, REPO_ROOT
from recipekit.training.recipe_config import RecipeError, apply_overrides, load_recipe, validate

PLUGIN_NAME = "recipekit.training.launch_check.LaunchCheckPlugin"

# With the optimizer offloaded, accelerate hands DeepSpeed its CPU Adam in place of the
# trainer's optimizer (accelerate.utils.deepspeed.map_pytorch_optim_to_deepspeed) and passes
# on only the learning rate and weight decay, so only torch's AdamW at CPU Adam's own betas
# and epsilon comes out as the optimizer the recipe asked for.
CPU_ADAM_KEEPS = ("adamw_torch", "adamw_torch_fused")
CPU_ADAM_DEFAULTS = {"adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8}
# The config keys the rules read.
CHECKED_KEYS = ("deepspeed", "fsdp", "fsdp_config", "optimizer", "load_in_8bit", "reward_model",
                "process_reward_model", *CPU_ADAM_DEFAULTS)


def _launcher(name: str) -> str:
    return str(LAUNCH_DIR.relative_to(REPO_ROOT) / name)


def read_deepspeed(value: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The DeepSpeed config a recipe names: inline, or a JSON file found from the working directory, as DeepSpeed does."""
    if isinstance(value, Mapping):
        return dict(value)
    try:
        return json.loads(Path(value).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"deepspeed: {value}: no such file, looking from {Path.cwd()} "
                          "(run axolotl train from the repository root)") from None
    except json.JSONDecodeError as err:
        raise RecipeError(f"deepspeed: {value}: not valid JSON: {err}") from err


def _cpu_adam_loss(config: Mapping[str, Any]) -> str | None:
    """What the recipe loses when its optimizer becomes DeepSpeed's CPU Adam; None when nothing."""
    optimizer = config.get("optimizer")
    optimizer = getattr(optimizer, "value", optimizer)  # Axolotl's own optimizers are an Enum
    if optimizer not in CPU_ADAM_KEEPS:
        return f"so optimizer: {optimizer} never runs"
    changed = [f"{key}: {config[key]}" for key, default in CPU_ADAM_DEFAULTS.items()
               if config.get(key) not in (None, default)]
    if changed:
        return f"which keeps its learning rate and weight decay but not {', '.join(changed)}"
    return None


def launch_problems(config: Mapping[str, Any]) -> list[str]:
    """Why `config` cannot train as written under the engine it names; empty when it can.

    `config` is a recipe with its launcher applied, as Axolotl's validation leaves it.
    """
    deepspeed = config.get("deepspeed")
    fsdp = bool(config.get("fsdp") or config.get("fsdp_config"))
    if deepspeed and fsdp:
        return [f"deepspeed: {deepspeed} and FSDP (fsdp_config) are both set, but a run has one engine: "
                "drop the FSDP options, or train a copy of the recipe without its deepspeed key"]
    ds = read_deepspeed(deepspeed) if deepspeed else {}
    zero = ds.get("zero_optimization") or {}
    same_stage = _launcher("zero3.json" if zero.get("stage") == 3 else "zero2.json")
    problems = []
    offload = (zero.get("offload_optimizer") or {}).get("device", "none")
    # DeepSpeed builds its own optimizer from an "optimizer" section, and keeps the trainer's
    # when told to with zero_force_ds_cpu_optimizer: false; only otherwise does the swap happen.
    if offload != "none" and "optimizer" not in ds and ds.get("zero_force_ds_cpu_optimizer", True):
        loss = _cpu_adam_loss(config)
        if loss:
            problems.append(f"deepspeed: {deepspeed} offloads the optimizer to the {offload}, where accelerate "
                            f"replaces the recipe's optimizer with DeepSpeed's CPU Adam, {loss}. Use {same_stage} "
                            "(the same ZeRO stage, optimizer on the GPU), or optimizer: adamw_torch")
    if config.get("load_in_8bit") and (fsdp or zero.get("stage") == 3):
        engine = "FSDP" if fsdp else f"ZeRO-3 ({deepspeed})"
        problems.append(f"load_in_8bit: true cannot train under {engine}: bitsandbytes' 8-bit weights do not "
                        "shard (under ZeRO-3 the loss comes out an order of magnitude wrong). Use "
                        f"{_launcher('zero2.json')}, which keeps whole weights on every GPU, or load_in_4bit: true "
                        "with adapter: qlora")
    if (config.get("reward_model") or config.get("process_reward_model")) and zero.get("stage") == 3:
        # axolotl/loaders/model.py, _reinitialize_classification_head: `weight.abs().max()` of the head
        problems.append(f"a reward model cannot load under ZeRO-3 ({deepspeed}) in Axolotl 0.19: after loading it "
                        "checks the classification head's weights, and ZeRO-3 has left each process a partitioned "
                        "head of no elements, whose max() fails before the first step. Use "
                        f"{_launcher('zero2.json')} or {_launcher('zero2_offload.json')}")
    return problems


class LaunchCheckArgs(BaseModel):
    """Adds `launch_problems` to Axolotl's config validation, after Axolotl's own checks."""

    @model_validator(mode="after")
    def check_launch(self):
        problems = launch_problems({key: getattr(self, key, None) for key in CHECKED_KEYS})
        if problems:
            raise ValueError(" ".join(problems))
        return self


class LaunchCheckPlugin(BasePlugin):
    """Axolotl plugin: a recipe and launcher that cannot work together fail at config validation."""

    def get_input_args(self) -> str:
        return "recipekit.training.launch_check.LaunchCheckArgs"


def launch_overrides(launch: str | Path) -> dict[str, Any]:
    """The config keys a launcher sets: `deepspeed: PATH` for a DeepSpeed JSON, its own keys for a YAML."""
    launch = Path(launch)
    if launch.suffix == ".json":
        read_deepspeed(launch)  # a missing or broken file fails here, not on the GPUs
        return {"deepspeed": str(launch)}
    if launch.suffix in (".yml", ".yaml"):
        return load_recipe(launch)
    raise RecipeError(f"{launch}: a launcher is a DeepSpeed .json file or a .yml of Axolotl config keys")


def cli_flags(overrides: Mapping[str, Any]) -> list[str]:
    """The `axolotl train` options that set `overrides`: dashes for underscores, a dot into a mapping."""
    flags: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            flags += cli_flags({f"{key}.{sub}": item for sub, item in value.items()})
        elif isinstance(value, bool):
            flags.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        else:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


@dataclass(frozen=True)
class Verdict:
    refused_by: str | None  # "Axolotl" or "recipekit"; None when the pair can run
    reason: str = ""


def check_launch(recipe: str | Path, launch: str | Path | None = None) -> Verdict:
    """Axolotl's validation, then `launch_problems`, on `recipe` with `launch`'s keys applied as overrides."""
    config = apply_overrides(load_recipe(recipe), launch_overrides(launch) if launch else {})
    # Axolotl's verdict alone: were the plugin registered in this process, validate() would add ours.
    config.pop("plugins", None)
    try:
        validated = validate(config, recipe)
    except RecipeError as err:
        return Verdict("Axolotl", str(err))
    problems = launch_problems(validated)
    return Verdict("recipekit", " ".join(problems)) if problems else Verdict(None)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="a recipe (any Axolotl config)")
    parser.add_argument("--launch", type=Path, help="a launcher config from recipes/launch/ (default: none)")
    args = parser.parse_args(argv)
    verdict = check_launch(args.config, args.launch)
    flags = cli_flags(launch_overrides(args.launch)) if args.launch else []
    pair = f"{args.config} with {args.launch}" if args.launch else str(args.config)
    if verdict.refused_by:
        print(f"error: {pair} cannot run; refused by {verdict.refused_by}: {verdict.reason}", file=sys.stderr)
        return 2
    print(f"{pair} can run:\n  {shlex.join(['axolotl', 'train', str(args.config), *flags])}\n"
          "on N GPUs of one node add `-- --num_processes N`; for several nodes see recipes/launch/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
