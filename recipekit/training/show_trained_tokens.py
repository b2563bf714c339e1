"""Show which tokens of one data row train, exactly as Axolotl tokenises and masks it.

The row goes through the prompt strategy that `axolotl preprocess`/`axolotl train` build
for the config's dataset entry (its `type`, field mappings, roles_to_train, train_on_eos,
eot_tokens and chat template), with the tokenizer Axolotl loads for that config.
Trained tokens are highlighted in colour on a terminal, or wrapped in [[…]] otherwise.

    python -m recipekit.training.show_trained_tokens --config recipes/supervisor_stage1.yml \\
        --data data/supervisor/stage1_train.jsonl --row 0 [--tokenizer PATH] [--plain]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.training.recipe_config import RecipeError, apply_overrides, load_recipe, validate

IGNORE_INDEX = -100
_ON, _OFF = "\x1b[1;30;42m", "\x1b[0m"


def axolotl_cfg(config: dict[str, Any], data: str | Path | None = None, tokenizer: str | Path | None = None,
                dataset_index: int = 0, source: str = "<config>"):
    """The validated Axolotl cfg of `config`, its dataset entry pointed at `data` and its tokenizer at `tokenizer`."""
    from axolotl.utils.dict import DictDefault

    datasets = list(config.get("datasets") or [])
    if not 0 <= dataset_index < len(datasets):
        raise RecipeError(f"{source}: has no datasets[{dataset_index}]")
    overrides: dict[str, Any] = {}
    if data is not None:
        datasets[dataset_index] = {**datasets[dataset_index], "path": str(data)}
        overrides["datasets"] = datasets
    if tokenizer is not None:
        overrides.update(base_model=str(tokenizer), tokenizer_config=str(tokenizer))
    from axolotl.utils.config import normalize_cfg_datasets, normalize_config

    # What `axolotl train`/`preprocess` do after validating: derive tokenizer_config, copy the
    # chat template onto chat_template dataset entries.
    cfg = DictDefault(validate(apply_overrides(config, overrides), source))
    normalize_config(cfg)
    normalize_cfg_datasets(cfg)
    return cfg


def tokenize_row(cfg, row: dict[str, Any], dataset_index: int = 0) -> tuple[Any, dict[str, list[int]]]:
    """(tokenizer, {"input_ids", "labels", …}) of `row` under the cfg's dataset entry, by Axolotl itself."""
    from axolotl.loaders import load_tokenizer
    from axolotl.prompt_strategies import load as load_strategy

    tokenizer = load_tokenizer(cfg)
    entry = cfg.datasets[dataset_index]
    strategy = load_strategy(entry["type"], tokenizer, cfg, entry)
    if strategy is None:
        raise RecipeError(f"Axolotl has no prompt strategy {entry['type']!r}")
    return tokenizer, strategy.tokenize_prompt(json.loads(json.dumps(row)))


def highlight(tokenizer, input_ids: list[int], labels: list[int], colour: bool) -> str:
    """The decoded row with each run of trained tokens marked (runs decode whole, so characters stay intact)."""
    on, off = (_ON, _OFF) if colour else ("[[", "]]")
    runs: list[tuple[bool, list[int]]] = []
    for token_id, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if runs and runs[-1][0] == trained:
            runs[-1][1].append(token_id)
        else:
            runs.append((trained, [token_id]))
    pieces = [tokenizer.decode(ids, skip_special_tokens=False) for _, ids in runs]
    return "".join(f"{on}{text}{off}" if trained else text for (trained, _), text in zip(runs, pieces))


def read_row(path: Path, index: int) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    if not 0 <= index < len(lines):
        raise RecipeError(f"{path}: has {len(lines)} rows; --row {index} is out of range")
    try:
        return json.loads(lines[index])
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path}: row {index}: not valid JSON ({err})") from err


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="a recipe or any Axolotl config")
    parser.add_argument("--data", required=True, type=Path, help="a JSONL file in that dataset entry's shape")
    parser.add_argument("--row", type=int, default=0, help="0-based row index")
    parser.add_argument("--dataset-index", type=int, default=0, help="which datasets[] entry describes --data")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer (and model) path in place of the config's base_model")
    parser.add_argument("--plain", action="store_true", help="mark trained tokens with [[…]] even on a terminal")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    cfg = axolotl_cfg(load_recipe(args.config), args.data, args.tokenizer, args.dataset_index, str(args.config))
    tokenizer, tokens = tokenize_row(cfg, read_row(args.data, args.row), args.dataset_index)
    trained = sum(label != IGNORE_INDEX for label in tokens["labels"])
    colour = sys.stdout.isatty() and not args.plain
    print(highlight(tokenizer, tokens["input_ids"], tokens["labels"], colour))
    print(f"\n{trained} of {len(tokens['input_ids'])} tokens train", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
