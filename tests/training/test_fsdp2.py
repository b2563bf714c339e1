"""The reward model (full fine-tune, torch AdamW) under FSDP2 through the real `axolotl train` on two CPU
processes (torchrun, gloo), with the keys of recipes/launch/fsdp2.yml as they are, the data prepared
first by `axolotl preprocess`. Axolotl 0.19 and accelerate 1.13 assume an accelerator for FSDP2 in two
places; recipekit/testing/cpu_fsdp2.py says which and how the test harness gets past them.

One step of 2 processes x micro-batch 1 x accumulation 2 is compared with the one-process run the
DeepSpeed tests share (1 x 1 x 4 over the same rows in file order, no engine): the logged loss and
gradient norm to the four printed digits, the gathered gradients to 1e-4 of their norm (float32 sums
in another order) and the weight updates to 1e-3 (Adam divides by the gradients' root mean square).

The run saves a checkpoint after its step with `fsdp_config.state_dict_type: SHARDED_STATE_DICT` (transformers'
default is whole checkpoints): one shard file per rank, which the merge, the 4-bit export and every loader
refuse, naming the final-save setting and the command that gathers the shards.
"""

from __future__ import annotations

import pytest
import torch
from helpers import run_module
from safetensors.torch import load_file

from recipekit.checkpoints.load import CheckpointError, load_model, load_tokenizer
from recipekit.checkpoints.merge import main as merge_main
from recipekit.checkpoints.quantize import main as quantize_main
from recipekit.paths import LAUNCH_DIR, RECIPES_DIR
from recipekit.testing.cpu_parallel import (
    SAME_ROWS,
    far_from,
    fsdp2_shard_problems,
    fsdp2_split,
    read_records,
    recorded_plugins,
    run_summary,
    step_updates,
)
from recipekit.testing.smoke import smoke_train
from recipekit.training.launch_check import launch_overrides

pytestmark = [pytest.mark.multiprocess, pytest.mark.train]

REWARD = RECIPES_DIR / "reward_ja_3b.yml"
LOGGED_DIGITS = 1e-3
SAME_MATHS = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_process_over_same_rows):
    """(1-process run, its records, 2-process FSDP2 run, its records), records by step then rank."""
    one = one_process_over_same_rows(REWARD)
    fsdp2 = launch_overrides(LAUNCH_DIR / "fsdp2.yml")
    # checkpoints as shards (the final save stays whole, as fsdp2.yml says), one saved after the step
    fsdp2["fsdp_config"] = {**fsdp2["fsdp_config"], "state_dict_type": "SHARDED_STATE_DICT"}
    two = smoke_train(REWARD, tmp_path_factory.mktemp("reward-fsdp2"), steps=1, nproc=2,
                      extra={"plugins": recorded_plugins(REWARD), **fsdp2, "save_strategy": "steps", "save_steps": 1,
                             "gradient_accumulation_steps": 2, **SAME_ROWS})
    return one, read_records(one.output_dir, 1, 1), two, read_records(two.output_dir, 1, 2)


def test_the_trainer_steps_an_fsdp2_module_sharded_over_a_cpu_mesh_of_both_processes(runs):
    _, one, _, two = runs
    model = one[0][0]["wrapper"]  # the model class itself: one process has no engine
    for step, ranks in two.items():
        assert [(r["world_size"], r["backend"], r["data_shards"], r["wrapper"], r["fsdp2_mesh"], r["optimizer"])
                for r in ranks] == [(2, "gloo", 2, f"FSDP{model}", ("cpu", 2, "(Shard(dim=0),)"), "AdamW")] * 2, \
            f"step {step}"
    assert one[0][0]["fsdp2_mesh"] is None


def test_each_rank_holds_a_disjoint_half_of_every_trainable_parameter(runs):
    """The ranks' local shards, in rank order, make up each parameter (which every rank gathers alike);
    each holds at most half its rows (the one-row score head lives on rank 0 alone)."""
    _, _, _, two = runs
    for step, ranks in two.items():
        assert not fsdp2_shard_problems(ranks), f"step {step}"
        assert all(torch.equal(ranks[1]["params"][name], p) for name, p in ranks[0]["params"].items())
        total = sum(p.numel() for p in ranks[0]["params"].values())
        assert sum(fsdp2_split(ranks)) == total and max(fsdp2_split(ranks)) < 0.51 * total, f"step {step}"


def test_the_first_step_equals_the_single_process_one(runs):
    one_run, one, two_run, two = runs
    print(run_summary("reward-fsdp2", two[1], two_run.log_records[0]["loss"], one_run.log_records[0]["loss"]))
    for key in ("loss", "grad_norm"):
        assert float(two_run.log_records[0][key]) == pytest.approx(float(one_run.log_records[0][key]),
                                                                  rel=LOGGED_DIGITS)
    assert all(torch.equal(two[0][0]["params"][name], p) for name, p in one[0][0]["params"].items()), \
        "the runs do not start from the same weights"
    assert not far_from(two[1][0]["grads"], one[1][0]["grads"], SAME_MATHS)
    updates = step_updates(two, 1)
    assert any(u.abs().max() > 0 for u in updates.values()), "nothing trained"
    assert not far_from(updates, step_updates(one, 1), 10 * SAME_MATHS)


def test_the_final_save_holds_every_weight_whole(runs):
    """fsdp2.yml's final_state_dict_type FULL_STATE_DICT: model.safetensors is what merge/ and eval/ read,
    each weight whole and equal to what the ranks gathered after the last step."""
    _, _, two_run, two = runs
    saved = load_file(two_run.output_dir / "model.safetensors")
    assert two[1][0]["params"].keys() <= saved.keys()
    assert all(torch.equal(saved[name].float(), p) for name, p in two[1][0]["params"].items())


SHARDS = "pytorch_model_fsdp_0"


@pytest.fixture(scope="module")
def checkpoint(runs):
    return runs[2].output_dir / "checkpoint-1"


def test_the_sharded_checkpoint_is_one_shard_file_per_rank(checkpoint):
    assert sorted(p.name for p in (checkpoint / SHARDS).iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def _refusal(checkpoint, capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "fsdp_config.final_state_dict_type: FULL_STATE_DICT" in err
    assert f"`accelerate merge-weights {checkpoint / SHARDS} OUT`" in err
    return err


def test_merge_refuses_the_sharded_checkpoint_as_an_adapter(runs, checkpoint, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge_main(["--base", str(runs[2].output_dir), "--adapter", str(checkpoint), "--out", str(out)]) == 2
    assert _refusal(checkpoint, capsys).startswith(f"error: {checkpoint} holds only FSDP shards")
    assert not out.exists()


def test_loading_the_sharded_checkpoint_as_a_model_or_tokenizer_is_refused(checkpoint):
    """How a merge base, the export and every scorer read a checkpoint."""
    for load in (lambda: load_model(checkpoint, None, "cpu"), lambda: load_tokenizer(checkpoint)):
        with pytest.raises(CheckpointError, match="holds only FSDP shards"):
            load()


def test_4bit_export_refuses_the_sharded_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / "nf4"
    assert quantize_main(["--model", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 2
    _refusal(checkpoint, capsys)
    assert not out.exists()


def test_the_named_command_gathers_the_shards_into_the_weights_after_the_step(runs, checkpoint, tmp_path):
    out = tmp_path / "gathered"
    done = run_module("accelerate.commands.accelerate_cli", "merge-weights", checkpoint / SHARDS, out)
    assert done.returncode == 0, done.stderr[-3000:]
    gathered, final = load_file(out / "model.safetensors"), load_file(runs[2].output_dir / "model.safetensors")
    assert gathered.keys() == final.keys()  # the one step's weights, as the final save holds them whole
    assert all(torch.equal(gathered[name], tensor) for name, tensor in final.items())

