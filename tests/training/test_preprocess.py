"""`axolotl preprocess`, the step before a run of several processes (recipes/launch/README.md),
run as the reward recipe's header writes it, on the recipe's tiny model and fixture pairs."""

from __future__ import annotations

import re
import shlex

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing.offline import offline_env
from recipekit.testing.smoke import smoke_overrides, write_run_config
from recipekit.training.recipe_config import load_recipe
from recipekit.training.runner import preprocess_options, run_axolotl

pytestmark = pytest.mark.train

REWARD = RECIPES_DIR / "reward_ja_3b.yml"


def _header_command(recipe) -> list[str]:
    """The `axolotl preprocess` command of the recipe's header, split as a shell would."""
    line = re.search(rf"^#\s+(axolotl preprocess recipes/{recipe.name}\b.*)$", recipe.read_text(encoding="utf-8"),
                     flags=re.M)
    assert line, f"{recipe.name}: its header gives no axolotl preprocess command"
    return shlex.split(line.group(1))


def test_the_reward_recipe_preprocesses_with_its_header_command_and_the_bare_command_fails(tmp_path):
    command = _header_command(REWARD)
    assert command[:3] == ["axolotl", "preprocess", f"recipes/{REWARD.name}"]
    config = load_recipe(REWARD)
    assert command[3:] == preprocess_options(config)  # what the two-process runs of the tests use
    run_config, config_path = write_run_config(REWARD, tmp_path, smoke_overrides(REWARD, config, tmp_path, 1))
    run = {"cwd": tmp_path, "env": offline_env(), "timeout": 600}

    # as written: the recipe swapped for its CPU run of the same recipe
    run_axolotl("preprocess", config_path, tmp_path / "as_written.log", options=command[3:], **run)
    prepared = list((tmp_path / "prepared").rglob("*.arrow"))
    assert prepared, "no prepared dataset written"

    # without the option Axolotl prints a sample row and fails on the Bradley-Terry pair
    output = run_axolotl("preprocess", config_path, tmp_path / "bare.log", expected_status=1, **run)
    assert "KeyError: 'input_ids'" in output
