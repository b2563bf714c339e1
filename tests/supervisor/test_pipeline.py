"""The demo's pipeline (recipekit.demo.run_pipeline) on the tiny Gemma 4, the recipes' own model class, with
their own chat template and LoRA targets: sample data, both stages through `axolotl train`, both merges,
and the card's scorer on the stage-1-only and the final model. `make demo` runs the same on SmolLM2."""

import json

import pytest
import yaml

from recipekit.demo import DEMO, STAGE1, STAGE2, Setup, run_pipeline
from recipekit.paths import RECIPES_DIR
from recipekit.training.recipe_config import load_recipe

pytestmark = pytest.mark.train

# A few rows and steps: the pipeline's plumbing, not the demo's accuracy (a random-init model cannot judge)
TINY = Setup(stage1_pairs=8, train_rows=16, held_out_rows=6, system=DEMO.system, sequence_len=256,
             steps={STAGE1: 2, STAGE2: 2}, learning_rates=DEMO.learning_rates, max_new_tokens=12, eval_batch_size=6,
             overrides={"data_language": "en"})


def test_the_demo_pipeline_runs_on_the_tiny_gemma4_with_the_recipes_template_and_targets(tiny_model, tmp_path,
                                                                                          capsys):
    result = run_pipeline(tmp_path, tiny_model("gemma4"), TINY)

    for recipe, run in ((STAGE1, "stage1"), (STAGE2, "stage2")):
        ran = yaml.safe_load((tmp_path / run / recipe.replace(".yml", ".run.yml")).read_text())
        own = load_recipe(RECIPES_DIR / recipe)
        assert (ran["chat_template"], ran["lora_target_modules"]) == (own["chat_template"], own["lora_target_modules"])
        assert ran["max_steps"] == 2
    config = json.loads((result.final_model / "config.json").read_text())
    assert config["architectures"] == ["Gemma4UnifiedForConditionalGeneration"]
    card = (result.final_model / "README.md").read_text()
    # the recipes' data is Korean; the run's data_language key names the sample data's
    assert "base_model: google/gemma-4-12B-it" in card and "language:\n- en\n" in card

    predictions = [json.loads(line) for line in
                   (tmp_path / "eval_full_merged" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6 and all(p["reference"].startswith("<think>") for p in predictions)
    assert result.stage1_only["n"] == result.final["n"] == 6
    printed = capsys.readouterr().out
    assert "| Accuracy |" in printed and "== one held-out row" in printed
