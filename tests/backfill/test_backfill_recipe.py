"""recipes/reasoning_backfill_qwen3_4b.yml adds the six sentinels as single tokens and packs on CPU.

The smoke run starts from the plain tiny Qwen 3 (no sentinels), so everything checked on
its output was done by `axolotl train` following the recipe's `special_tokens`.
"""

from __future__ import annotations

import pytest
from safetensors import safe_open
from transformers import AutoTokenizer

from recipekit.paths import RECIPES_DIR
from recipekit.templates.special_tokens import backfill_sentinels
from recipekit.testing.smoke import SMOKE_STEPS
from recipekit.training.recipe_config import load_recipe

pytestmark = pytest.mark.train

RECIPE = RECIPES_DIR / "reasoning_backfill_qwen3_4b.yml"


def test_recipe_adds_exactly_the_sentinels_of_the_data_file():
    config = load_recipe(RECIPE)
    assert config["special_tokens"]["additional_special_tokens"] == backfill_sentinels()
    assert "tokens" not in config  # `tokens:` would add them as ordinary, not special, tokens


@pytest.fixture(scope="module")
def smoke(shared_smoke_run):
    return shared_smoke_run(RECIPE, SMOKE_STEPS)  # the run of tests/training/test_recipes.py


def test_saved_tokenizer_has_each_sentinel_as_one_new_special_token(smoke, tiny_model):
    base = AutoTokenizer.from_pretrained(tiny_model("qwen3"))
    trained = AutoTokenizer.from_pretrained(smoke.output_dir)
    assert len(trained) == len(base) + len(backfill_sentinels())
    ids = []
    for sentinel in backfill_sentinels():
        assert len(base.encode(sentinel, add_special_tokens=False)) > 1  # the base splits it
        encoded = trained.encode(f"x{sentinel}y", add_special_tokens=False)
        ids.append(trained.convert_tokens_to_ids(sentinel))
        assert ids[-1] in encoded and len(trained.encode(sentinel, add_special_tokens=False)) == 1
        assert sentinel in trained.all_special_tokens
    assert sorted(ids) == list(range(len(base), len(trained)))


def test_saved_model_embeddings_are_resized_to_the_tokenizer(smoke, tiny_model):
    def embedding_rows(path):
        with safe_open(str(path / "model.safetensors"), "pt") as weights:
            return weights.get_slice("model.embed_tokens.weight").get_shape()[0]

    trained_rows = embedding_rows(smoke.output_dir)
    assert trained_rows == embedding_rows(tiny_model("qwen3")) + len(backfill_sentinels())
    assert trained_rows == len(AutoTokenizer.from_pretrained(smoke.output_dir))


def test_sample_packing_runs_on_cpu(smoke):
    log = smoke.log_path.read_text(encoding="utf-8")
    assert "Applying multipack dataloader patch for sample packing" in log
    assert '"attn_implementation": "sdpa"' in log
