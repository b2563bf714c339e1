"""Every recipe in recipes/ validates with Axolotl and trains on CPU via `axolotl train`.

Parametrised over the folder, so a new recipe is covered the day it lands.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import torch
import yaml
from helpers import hub_card
from PIL import Image
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from recipekit.paths import RECIPES_DIR, REPO_ROOT
from recipekit.reporting.card_facts import RECIPE_LANGUAGES, base_license
from recipekit.testing.smoke import SMOKE_STEPS
from recipekit.training.cpu_overrides import cpu_overrides
from recipekit.training.manifest_plugin import CURVES_JSON, CURVES_PNG, PLUGIN_NAME
from recipekit.training.recipe_config import apply_overrides, header_comment, load_recipe, read_header, validate

pytestmark = pytest.mark.train

RECIPES = sorted(RECIPES_DIR.glob("*.yml"))


def lora_modules(adapter_dir) -> set[str]:
    """Modules of the base model that got LoRA weights, by name."""
    with safe_open(adapter_dir / "adapter_model.safetensors", framework="pt") as handle:
        return {key.removeprefix("base_model.model.").split(".lora_")[0] for key in handle.keys()}


def language_model_linears(base) -> set[str]:
    """Every linear layer of the base model's language model (its decoder)."""
    model = AutoModelForCausalLM.from_pretrained(base)
    decoder = model.get_decoder()
    prefix = next(name for name, module in model.named_modules() if module is decoder)
    return {f"{prefix}.{name}" for name, module in decoder.named_modules() if isinstance(module, torch.nn.Linear)}


def tensorboard_scalars(output_dir, tag):
    """The values TensorBoard's own reader finds under `tag` in the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (output_dir / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


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


# a path that leaves the repository: ../x, ~/x or /x, at the start of a word
OUTSIDE_PATH = re.compile(r"(?:^|[\s(`'\"=])(\.\./|~/|/)[\w.]")
# a file of the repository named in a header (a script, recipe, launcher or template)
REPO_FILE = re.compile(r"\b((?:dataset_prep|eval|merge|recipes|chat_templates|recipekit|tests)/[\w./-]+"
                       r"\.(?:py|yml|json|jinja|sbatch|md))\b")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_cites_its_model_card_and_stays_in_the_repository(recipe):
    text = "\n".join(line.lstrip("#") for line in header_comment(recipe))
    outside = [match.group(0).strip() for line in text.splitlines() for match in OUTSIDE_PATH.finditer(line)]
    assert not outside, f"{recipe.name}: the header names paths outside the repository: {outside}"
    header = read_header(recipe)
    assert header.card_url and header.card_url.startswith("https://huggingface.co/"), (
        f"{recipe.name}: the header does not cite its model card as 'model card OWNER/NAME (https://huggingface.co/...)'")
    assert header.card_url == f"https://huggingface.co/{header.card_name}"
    missing = [name for name in REPO_FILE.findall(text) if not (REPO_ROOT / name).is_file()]
    assert not missing, f"{recipe.name}: the header names files the repository lacks: {missing}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_on_cpu(recipe, shared_smoke_run):
    before = hashlib.sha256(recipe.read_bytes()).hexdigest()
    result = shared_smoke_run(recipe, SMOKE_STEPS)
    assert len(result.losses) >= 1
    assert all(math.isfinite(x) and x > 0 for x in result.losses)
    assert hashlib.sha256(recipe.read_bytes()).hexdigest() == before, "the recipe file was modified"
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["seed"] == load_recipe(recipe).get("seed")
    assert all(digest for digest in manifest["inputs"].values()), "a dataset file was not hashed"
    if load_recipe(recipe).get("adapter"):
        # LoRA on every linear layer of the language model and nowhere else (Gemma 3 and 4
        # also have a vision tower or image embedder, which text-only data never trains)
        base = yaml.safe_load(result.config_path.read_text())["base_model"]
        assert lora_modules(result.output_dir) == language_model_linears(base)
    else:  # a full fine-tune gets its model card when training ends, in place of Axolotl's own
        # the tiny model it trained stands in for the recipe's base model: the card names that one
        base_model = load_recipe(recipe)["base_model"]
        card = hub_card(result.output_dir / "README.md", base_model=base_model, license=base_license(base_model)[0],
                        language=[RECIPE_LANGUAGES[recipe.name]], private=[result.output_dir.parent])
        assert {"recipekit", "axolotl", "full-fine-tune"} <= set(card.data.tags)
        assert "## Deviations from the source card" in card.text

    # TensorBoard on by default; the curves beside manifest.json hold what the trainer logged
    curves = json.loads((result.output_dir / CURVES_JSON).read_text())
    assert curves["loss"]["value"] == pytest.approx(result.losses, rel=1e-3)  # printed to 4 digits
    assert curves["loss"]["value"] == pytest.approx(tensorboard_scalars(result.output_dir, "train/loss"), rel=1e-6)
    assert curves["loss"]["step"] == list(range(1, len(result.losses) + 1))
    assert len(curves["learning_rate"]["value"]) == len(result.losses)
    config = load_recipe(recipe)
    preference = {"rl": ("rewards/margins", "rewards/accuracies"), "reward_model": ("margin", "accuracy")}
    for kind, keys in preference.items():
        for key in keys:
            assert (key in curves) == bool(config.get(kind)), f"{key} in the curves of a run without {kind}"
            if config.get(kind):
                logged = [float(r[key]) for r in result.log_records if key in r]
                assert curves[key]["value"] == pytest.approx(logged, rel=1e-3, abs=1e-4)
    with Image.open(result.output_dir / CURVES_PNG) as image:
        image.verify()
        assert image.format == "PNG"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_writes_a_manifest(recipe):
    assert PLUGIN_NAME in (load_recipe(recipe).get("plugins") or []), f"{recipe.name} lacks the manifest plugin"
