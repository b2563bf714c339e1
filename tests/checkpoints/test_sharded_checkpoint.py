"""The merge and the 4-bit export refuse a checkpoint saved as FSDP shards, naming the
setting that saves whole weights and the command that gathers these.

The checkpoint is real: two CPU processes (torchrun, gloo) shard a LoRA model of the tiny
Gemma 2 with FSDP2 and save it with accelerate's save_fsdp_model, the call the Trainer makes
for every checkpoint of an FSDP2 run whose state_dict_type is SHARDED_STATE_DICT (FSDP2's
default; fsdp_config.final_state_dict_type decides only the final save), in seconds and without
`axolotl train` (which runs FSDP2 on CPU processes in tests/training/test_fsdp2.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from recipekit.checkpoints.load import CheckpointError, load_model, load_tokenizer
from recipekit.checkpoints.merge import main as merge_main
from recipekit.checkpoints.quantize import main as quantize_main
from recipekit.testing.offline import offline_env

pytestmark = [pytest.mark.multiprocess, pytest.mark.train]

SHARDS = "pytorch_model_fsdp_0"
LORA_RANK = 4  # recipekit.testing.cpu_parallel.write_fsdp2_sharded_checkpoint


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("fsdp2") / "checkpoint-1"
    done = subprocess.run([_bin("torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "recipekit.testing.cpu_parallel",
                           str(tiny_model("gemma2")), str(out)],
                          env=offline_env(), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_checkpoint_is_one_shard_file_per_rank(checkpoint):
    assert sorted(p.name for p in (checkpoint / SHARDS).iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def _refusal(checkpoint, capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "fsdp_config.final_state_dict_type: FULL_STATE_DICT" in err
    assert f"`accelerate merge-weights {checkpoint / SHARDS} OUT`" in err
    return err


def test_merge_refuses_it_as_an_adapter(checkpoint, tiny_model, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge_main(["--base", str(tiny_model("gemma2")), "--adapter", str(checkpoint), "--out", str(out)]) == 2
    assert _refusal(checkpoint, capsys).startswith(f"error: {checkpoint} holds only FSDP shards")
    assert not out.exists()


def test_loading_it_as_a_model_or_tokenizer_is_refused(checkpoint):
    """How a merge base, the export and every scorer read a checkpoint."""
    for load in (lambda: load_model(checkpoint, None, "cpu"), lambda: load_tokenizer(checkpoint)):
        with pytest.raises(CheckpointError, match="holds only FSDP shards"):
            load()


def test_4bit_export_refuses_it(checkpoint, tmp_path, capsys):
    out = tmp_path / "nf4"
    assert quantize_main(["--model", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 2
    _refusal(checkpoint, capsys)
    assert not out.exists()


def test_the_named_command_gathers_the_shards(checkpoint, tmp_path):
    out = tmp_path / "gathered"
    done = subprocess.run([_bin("accelerate"), "merge-weights", str(checkpoint / SHARDS), str(out)],
                          env=offline_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        lora_a = {key: weights.get_slice(key).get_shape() for key in weights.keys() if ".lora_A." in key}
    assert lora_a, "no LoRA weights gathered"
    # each rank saved half of every lora_A's rows; whole tensors have all of them
    assert {shape[0] for shape in lora_a.values()} == {LORA_RANK}
