"""A run killed after a saved step and run again ends with the weights of an uninterrupted run.

Each case trains the recipe's tiny model twice through the real `axolotl train` on CPU:
once straight through, once SIGKILLed right after it saved the checkpoint of step 2 (by its
own hand, recipekit/testing/crash.py, so the crash point is exact) and then started again
with the same output directory, which the recipe's `auto_resume_from_checkpoints` turns into
a resume. Float32 on CPU is deterministic, so
the resumed run must reproduce every step: the same losses and the same final weights (the
two runs start alike because the manifest plugin seeds before the adapter is drawn). The
learning rate is raised so that every step moves the weights well beyond the tolerance.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from recipekit.checkpoints.load import complete_checkpoints, remove_incomplete_checkpoints
from recipekit.paths import RECIPES_DIR
from recipekit.testing.smoke import kill_after_checkpoint, smoke_overrides, train_with_overrides
from recipekit.training.manifest_plugin import CURVES_JSON
from recipekit.training.recipe_config import load_recipe
from recipekit.training.runner import WEIGHT_FILES

pytestmark = pytest.mark.train

STEPS, KILL_AFTER = 5, 2
CASES = {
    "lora": "cs_chatbot_gemma3_4b.yml",
    "full_fine_tune": "reward_ja_3b.yml",
    "sppo": "sppo_gemma2_9b.yml",
}


def weights(output_dir):
    (name,) = [name for name in WEIGHT_FILES if (output_dir / name).is_file()]
    return load_file(output_dir / name)


@pytest.mark.crash_resume
@pytest.mark.parametrize("recipe", [RECIPES_DIR / name for name in CASES.values()], ids=list(CASES))
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(recipe, tmp_path):
    assert load_recipe(recipe)["auto_resume_from_checkpoints"] is True

    def overrides(workdir):
        return {**smoke_overrides(recipe, load_recipe(recipe), workdir, STEPS), "sequence_len": 128,
                "learning_rate": 1e-3, "save_strategy": "steps", "save_steps": 1,
                "dataset_prepared_path": str(tmp_path / "prepared")}  # tokenised once for the three runs

    whole = train_with_overrides(recipe, tmp_path / "whole", overrides(tmp_path / "whole"))

    crashed = tmp_path / "crashed"
    saved = kill_after_checkpoint(recipe, crashed, overrides(crashed), KILL_AFTER)
    assert KILL_AFTER <= saved < STEPS
    assert not any((crashed / "output" / name).exists() for name in WEIGHT_FILES), "the killed run had finished"
    at_kill = weights(crashed / "output" / f"checkpoint-{saved}")
    resumed = train_with_overrides(recipe, crashed, overrides(crashed))

    log = resumed.log_path.read_text(encoding="utf-8")
    assert re.search(rf"resume from checkpoint at \S*/checkpoint-{saved}\b", log)
    assert len(resumed.losses) == STEPS - saved  # only the steps after the checkpoint ran again
    # log_history came back with the checkpoint: the curves hold every step, equal to the whole run's
    curves = json.loads((resumed.output_dir / CURVES_JSON).read_text(encoding="utf-8"))
    expected = json.loads((whole.output_dir / CURVES_JSON).read_text(encoding="utf-8"))
    assert curves["loss"]["step"] == list(range(1, STEPS + 1))
    assert curves["loss"]["value"] == pytest.approx(expected["loss"]["value"], rel=1e-5)

    final, reference = weights(resumed.output_dir), weights(whole.output_dir)
    assert final.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # and the steps after the checkpoint moved the weights far beyond that tolerance
    assert max((final[name] - at_kill[name]).abs().max().item() for name in at_kill) > 1e-4


def test_an_interrupted_save_is_removed_so_resuming_takes_the_last_complete_checkpoint(tmp_path):
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.train import determine_last_checkpoint

    for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2}'), (3, None), (4, '{"global_')):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (checkpoint / "trainer_state.json").write_text(state, encoding="utf-8")
    cfg = DictDefault({"output_dir": str(tmp_path), "auto_resume_from_checkpoints": True})
    assert determine_last_checkpoint(DictDefault(cfg)) == str(tmp_path / "checkpoint-4")  # Axolotl alone

    assert complete_checkpoints(tmp_path) == [1, 2]
    removed = remove_incomplete_checkpoints(tmp_path)
    assert sorted(p.name for p in removed) == ["checkpoint-3", "checkpoint-4"]
    assert determine_last_checkpoint(cfg) == str(tmp_path / "checkpoint-2")
