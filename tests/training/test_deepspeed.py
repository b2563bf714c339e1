"""DeepSpeed ZeRO through the real `axolotl train` on two CPU processes (torchrun, gloo,
DS_ACCELERATOR=cpu), with the launcher files of recipes/launch/ as they are.

recipekit/testing/cpu_parallel.py starts accelerate's state for DeepSpeed over gloo (accelerate
would otherwise make the run multi-CPU DDP, or one process of one) and records on each rank what
the trainer steps through, read from the engine object: its class, its ZeRO stage, that of the
reference model, and under ZeRO-3 the rank's share of each parameter. Each run is compared with
the one-process run of the same global batch (no DeepSpeed there): 2 processes x micro-batch 1 x
accumulation 3 over the six fixture SPPO pairs is one micro-batch of six (test_data_parallel.py
says why that is the same maths). The logged metrics have four significant digits, so the
logged loss and log-probs agree to 1e-3 relative; the weights after each step to 1e-3 of the
update (ZeRO sums gradients in another order, and reduces them in float32 buckets).

The ZeRO-3 run saves a checkpoint at each step, so that it is also the uninterrupted run a
killed one must resume to: the same run SIGKILLed on both ranks right after the checkpoint of
step 1 (recipekit/testing/crash.py) and started again resumes from each rank's ZeRO-3 partitions
of that checkpoint and ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from recipekit.paths import RECIPES_DIR
from recipekit.testing.cpu_parallel import read_records, recorded_plugins, run_summary
from recipekit.testing.smoke import kill_after_checkpoint, smoke_overrides, smoke_train
from recipekit.training.recipe_config import load_recipe

pytestmark = [pytest.mark.multiprocess, pytest.mark.train]

SPPO = RECIPES_DIR / "sppo_gemma2_9b.yml"
STEPS = 2  # as the shared one-process run (conftest.py)
LOGGED_DIGITS = 1e-3  # the trainer prints metrics with four significant digits
UPDATE_TOLERANCE = 1e-3  # of each step's update, relative
KILL_AFTER = 1  # the step whose checkpoint the killed run saves last


def zero3_extra() -> dict:
    """The two-process ZeRO-3 run's overrides on top of the smoke run's: a checkpoint at each step."""
    launcher = load_recipe(SPPO)["deepspeed"]
    assert launcher == "recipes/launch/zero3.json"  # the card's own launcher file, unchanged
    return {"plugins": recorded_plugins(SPPO), "deepspeed": launcher, "micro_batch_size": 1,
            "gradient_accumulation_steps": 3, "save_strategy": "steps", "save_steps": 1}


@pytest.fixture(scope="module")
def sppo_zero3(tmp_path_factory, sppo_one_process):
    two = smoke_train(SPPO, tmp_path_factory.mktemp("sppo-zero3"), steps=STEPS, nproc=2, extra=zero3_extra())
    return (sppo_one_process, read_records(sppo_one_process.output_dir, STEPS, 1),
            two, read_records(two.output_dir, STEPS, 2))


def test_policy_and_reference_are_deepspeed_engines_at_zero3_on_one_gloo_group(sppo_zero3):
    _, _, _, two = sppo_zero3
    for step, ranks in two.items():
        for record in ranks:
            assert (record["world_size"], record["backend"], record["data_shards"]) == (2, "gloo", 2), f"step {step}"
            assert (record["wrapper"], record["zero_stage"]) == ("DeepSpeedEngine", 3), f"step {step}"
            assert record["reference"] == {"wrapper": "DeepSpeedEngine", "zero_stage": 3}, f"step {step}"


def test_under_zero3_the_ranks_hold_disjoint_shares_that_make_up_each_parameter(sppo_zero3):
    _, _, _, two = sppo_zero3
    for step, (rank0, rank1) in two.items():
        assert rank0["zero3_shares"].keys() == rank0["params"].keys() != set()
        for name, whole in rank0["params"].items():
            share0, share1 = rank0["zero3_shares"][name], rank1["zero3_shares"][name]
            # each rank holds its own half (the last padded), and the halves in rank order are the parameter
            assert share0.numel() == share1.numel() < whole.numel(), f"step {step}: {name}"
            assert torch.equal(torch.cat([share0, share1])[:whole.numel()], whole.flatten()), f"step {step}: {name}"
            assert torch.equal(rank1["params"][name], whole), f"step {step}: {name}"


def test_first_step_loss_and_reference_log_probs_equal_the_single_process_ones(sppo_zero3):
    one_run, _, two_run, two = sppo_zero3
    print(run_summary("sppo-zero3", two[1], two_run.log_records[0]["loss"], one_run.log_records[0]["loss"]))
    assert len(two_run.log_records) == len(one_run.log_records) == STEPS
    for step, (ours, reference) in enumerate(zip(two_run.log_records, one_run.log_records), start=1):
        if step == 1:
            assert float(ours["loss"]) == pytest.approx(float(reference["loss"]), rel=LOGGED_DIGITS)
        for side in ("chosen", "rejected"):
            # the logged reference log-prob: the policy's less the log-ratio to the reference
            ref = [float(r[f"logps/{side}"]) - float(r[f"sppo/logratio_{side}"]) for r in (ours, reference)]
            assert ref[0] == pytest.approx(ref[1], rel=LOGGED_DIGITS), f"step {step}: {side}"


def test_each_step_updates_the_weights_as_the_single_process_run_does(sppo_zero3):
    _, one, _, two = sppo_zero3
    start = one[0][0]["params"]
    assert all(torch.equal(two[0][0]["params"][name], p) for name, p in start.items()), "different starting weights"
    for step in range(1, STEPS + 1):
        for name, p in one[step][0]["params"].items():
            ours, update = two[step][0]["params"][name] - start[name], p - start[name]
            assert update.abs().max() > 0, f"step {step}: {name} did not train"
            assert (ours - update).norm() <= UPDATE_TOLERANCE * update.norm(), f"step {step}: {name}"


def test_the_zero3_save_is_the_trained_model_whole(sppo_zero3):
    """zero3.json asks for the 16-bit gather on save: model.safetensors holds every weight whole,
    those every rank gathered after the last step, as merge/ and the 4-bit export read them."""
    _, _, two_run, two = sppo_zero3
    saved = load_file(two_run.output_dir / "model.safetensors")
    trained = two[STEPS][0]["params"]
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[name].float(), p) for name, p in trained.items())


@pytest.mark.crash_resume
def test_a_killed_zero3_run_resumes_to_the_weights_of_the_uninterrupted_one(sppo_zero3, tmp_path):
    """ZeRO-3, not ZeRO-2: each rank holds only its partition of the weights and of Adam's moments, so
    the resumed run must put both back from each rank's files of the checkpoint; and the
    uninterrupted run is the one this module trains anyway."""
    _, _, whole, _ = sppo_zero3
    overrides = {**smoke_overrides(SPPO, load_recipe(SPPO), tmp_path, STEPS), **zero3_extra()}
    saved = kill_after_checkpoint(SPPO, tmp_path, overrides, KILL_AFTER, nproc=2)
    assert saved == KILL_AFTER
    assert not (tmp_path / "output" / "model.safetensors").exists(), "the killed run had finished"
    at_kill = load_file(tmp_path / "output" / f"checkpoint-{saved}" / "model.safetensors")

    resumed = smoke_train(SPPO, tmp_path, steps=STEPS, nproc=2, extra=zero3_extra())
    log = resumed.log_path.read_text(encoding="utf-8")
    assert re.search(rf"resume from checkpoint at \S*/checkpoint-{saved}\b", log)
    assert [float(r["loss"]) for r in resumed.log_records] == \
        pytest.approx([float(r["loss"]) for r in whole.log_records[saved:]], rel=1e-5)
    final, reference = load_file(resumed.output_dir / "model.safetensors"), load_file(whole.output_dir / "model.safetensors")
    assert final.keys() == reference.keys() == at_kill.keys()
    # The recipe's learning rate moves the weights by a few 1e-6 a step, so the weights are held to
    # the step after the checkpoint, as above: a resume that lost RMSprop's averages or the
    # scheduler's step would be off by a good part of it. (Here they come out equal, bit for bit.)
    for name, tensor in reference.items():
        update = tensor - at_kill[name]
        assert update.abs().max() > 0, f"{name} did not train after the checkpoint"
        assert (final[name] - tensor).norm() <= UPDATE_TOLERANCE * update.norm(), name
