"""Every recipe in recipes/ validates with Axolotl and trains on CPU via `axolotl train`.

Parametrised over the folder, so a new recipe is covered the day it lands.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from recipekit.axolotl_manifest import PLUGIN_NAME
from recipekit.paths import RECIPES_DIR
from recipekit.recipe_config import apply_overrides, cpu_overrides, load_recipe, validate
from recipekit.smoke import smoke_train

RECIPES = sorted(RECIPES_DIR.glob("*.yml"))


def test_there_are_recipes():
    assert RECIPES, "recipes/ is empty"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_passes_axolotl_validation(recipe):
    config = load_recipe(recipe)
    validated = validate(config, recipe)
    assert validated["base_model"] == config["base_model"]
    # the CPU switches must also leave a valid config
    validate(apply_overrides(config, cpu_overrides(config)), recipe)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_documents_commands_and_deviations(recipe):
    header = []
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lower())
    text = "\n".join(header)
    for needed in ("axolotl train", "sized for", "deviation"):
        assert needed in text, f"{recipe.name}: header comment lacks '{needed}'"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_on_cpu(recipe, tmp_path):
    before = hashlib.sha256(recipe.read_bytes()).hexdigest()
    result = smoke_train(recipe, tmp_path, steps=3)
    assert len(result.losses) >= 1
    assert all(math.isfinite(x) and x > 0 for x in result.losses)
    assert hashlib.sha256(recipe.read_bytes()).hexdigest() == before, "the recipe file was modified"
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["seed"] == load_recipe(recipe).get("seed")
    assert all(digest for digest in manifest["inputs"].values()), "a dataset file was not hashed"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_writes_a_manifest(recipe):
    assert PLUGIN_NAME in (load_recipe(recipe).get("plugins") or []), f"{recipe.name} lacks the manifest plugin"
