"""Which recipe runs under which launcher in recipes/launch/, and a bad pair stops before model load.

Axolotl's own refusals are relied on (and pinned here by their message); recipekit's rules
cover the pairs Axolotl lets through although they cannot train as the recipe says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from recipekit.paths import LAUNCH_DIR, RECIPES_DIR, REPO_ROOT
from recipekit.testing.smoke import cpu_run_overrides
from recipekit.training.launch_check import (
    PLUGIN_NAME,
    check_launch,
    cli_flags,
    launch_overrides,
    launch_problems,
    main,
)
from recipekit.training.recipe_config import apply_overrides, dump_config, load_recipe
from recipekit.training.runner import AxolotlError, run_axolotl

RECIPES = sorted(RECIPES_DIR.glob("*.yml"))
LAUNCHERS = sorted(p for p in LAUNCH_DIR.iterdir() if p.suffix in (".json", ".yml"))

OK = (None, "")
MUON_DEEPSPEED = ("Axolotl", "Muon optimizer is currently incompatible with DeepSpeed")
BNB_FSDP2 = ("Axolotl", "FSDP2 not compatible with adamw_bnb_8bit, use `adamw_torch_8bit` instead")
CPU_ADAM = ("recipekit", "offloads the optimizer to the cpu, where accelerate replaces the recipe's optimizer "
                         "with DeepSpeed's CPU Adam, so optimizer: {optimizer} never runs. Use recipes/launch/{same}")
TWO_ENGINES = ("recipekit", "and FSDP (fsdp_config) are both set, but a run has one engine")
REWARD_ZERO3 = ("recipekit", "a reward model cannot load under ZeRO-3")

MUON = {"zero2.json": MUON_DEEPSPEED, "zero2_offload.json": MUON_DEEPSPEED, "zero3.json": MUON_DEEPSPEED,
        "zero3_offload.json": MUON_DEEPSPEED, "fsdp2.yml": OK}
BNB_8BIT = {"zero2.json": OK, "zero2_offload.json": CPU_ADAM, "zero3.json": OK, "zero3_offload.json": CPU_ADAM,
            "fsdp2.yml": BNB_FSDP2}
VERDICTS = {
    "supervisor_stage1": MUON,
    "supervisor_stage2": MUON,
    "cs_chatbot_gemma3_4b": BNB_8BIT,
    "reasoning_backfill_qwen3_4b": BNB_8BIT,
    "reward_ja_3b": {"zero2.json": OK, "zero2_offload.json": OK, "zero3.json": REWARD_ZERO3,
                     "zero3_offload.json": REWARD_ZERO3, "fsdp2.yml": OK},
    # the recipe names zero3.json itself, so FSDP flags would add a second engine
    "sppo_gemma2_9b": {"zero2.json": OK, "zero2_offload.json": CPU_ADAM, "zero3.json": OK,
                       "zero3_offload.json": CPU_ADAM, "fsdp2.yml": TWO_ENGINES},
}


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Recipes name launcher files relative to the repository root, where axolotl train runs."""
    monkeypatch.chdir(REPO_ROOT)


def test_the_launchers_are_there():
    assert [p.name for p in LAUNCHERS] == ["fsdp2.yml", "zero2.json", "zero2_offload.json", "zero3.json",
                                           "zero3_offload.json"]


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=lambda p: p.name)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_verdict_for_every_recipe_and_launcher(recipe, launcher):
    refused_by, expected = VERDICTS[recipe.stem][launcher.name]
    optimizer = load_recipe(recipe).get("optimizer")
    same = launcher.name.replace("_offload", "")
    verdict = check_launch(recipe, launcher.relative_to(REPO_ROOT))
    assert verdict.refused_by == refused_by, verdict.reason
    assert expected.format(optimizer=optimizer, same=same) in verdict.reason


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_the_check_inside_axolotl_train(recipe):
    assert PLUGIN_NAME in (load_recipe(recipe).get("plugins") or []), f"{recipe.name} lacks {PLUGIN_NAME}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_gives_a_multi_gpu_launch_the_check_lets_through(recipe):
    header = []
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip().removesuffix("\\"))
    text = " ".join(" ".join(header).split())
    assert "Launch:" in text, f"{recipe.name}: header does not say how it is launched"
    fsdp2 = " ".join(cli_flags(launch_overrides(LAUNCH_DIR / "fsdp2.yml")))
    command = re.search(rf"axolotl train recipes/{recipe.name} (--deepspeed (\S+)|{re.escape(fsdp2)})", text)
    if command is None:  # the recipe names its launcher itself and runs on N nodes as it is
        assert f"slurm.sbatch recipes/{recipe.name}" in text
        launch = None
    else:
        launch = command.group(2) or "recipes/launch/fsdp2.yml"
    verdict = check_launch(recipe, launch)
    assert verdict.refused_by is None, f"{recipe.name}: the header's launch is refused: {verdict.reason}"


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_offload_launchers_differ_from_their_stage_only_by_offload(name):
    base = json.loads((LAUNCH_DIR / f"{name}.json").read_text())
    offload = json.loads((LAUNCH_DIR / f"{name}_offload.json").read_text())
    zero = offload["zero_optimization"]
    moved = {key: zero.pop(key) for key in ("offload_optimizer", "offload_param") if key in zero}
    assert offload == base
    assert moved["offload_optimizer"]["device"] == "cpu"
    assert ("offload_param" in moved) == (name == "zero3")  # ZeRO-2 has no parameters to offload


@pytest.mark.parametrize(("launcher", "refused"), [("zero2.json", False), ("zero3.json", True), ("fsdp2.yml", True)])
def test_8bit_weights_are_refused_where_they_would_be_sharded(launcher, refused):
    config = {"optimizer": "adamw_torch", "load_in_8bit": True, **launch_overrides(LAUNCH_DIR / launcher)}
    problems = launch_problems(config)
    assert bool(problems) == refused
    if refused:
        assert "load_in_8bit: true cannot train" in problems[0] and "recipes/launch/zero2.json" in problems[0]


@pytest.mark.parametrize(("extra", "refused"), [({}, False), ({"adam_beta2": 0.999}, False),
                                                ({"adam_beta2": 0.95}, True), ({"optimizer": "adamw_torch_fused"}, False)])
def test_cpu_adam_takes_only_torch_adamw_at_its_own_betas(extra, refused):
    config = {"optimizer": "adamw_torch", **extra, **launch_overrides(LAUNCH_DIR / "zero3_offload.json")}
    problems = launch_problems(config)
    assert bool(problems) == refused
    if refused:
        assert "not adam_beta2: 0.95" in problems[0]


def test_a_missing_deepspeed_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="deepspeed: recipes/launch/zero3.json: no such file"):
        launch_problems({"optimizer": "adamw_torch", "deepspeed": "recipes/launch/zero3.json"})


def test_preflight_prints_the_train_command_for_a_pair_that_runs(capsys):
    assert main(["--config", "recipes/supervisor_stage1.yml", "--launch", "recipes/launch/fsdp2.yml"]) == 0
    out = capsys.readouterr().out
    assert ("axolotl train recipes/supervisor_stage1.yml --fsdp-version 2 --fsdp-config.auto-wrap-policy "
            "TRANSFORMER_BASED_WRAP --fsdp-config.final-state-dict-type FULL_STATE_DICT") in out


def test_preflight_refuses_with_the_working_alternative(capsys):
    assert main(["--config", "recipes/sppo_gemma2_9b.yml", "--launch", "recipes/launch/zero3_offload.json"]) == 2
    err = capsys.readouterr().err
    assert "refused by recipekit" in err and "optimizer: rmsprop never runs" in err
    assert "Use recipes/launch/zero3.json" in err


def test_launch_readme_gives_the_fsdp2_flags_the_check_prints():
    flags = " ".join(cli_flags(launch_overrides(LAUNCH_DIR / "fsdp2.yml")))
    assert flags in " ".join((LAUNCH_DIR / "README.md").read_text().replace("\\\n", " ").split())


@pytest.fixture
def axolotl_cli():
    """axolotl_cli(args) -> what `axolotl ARGS` would launch: its config options and launcher arguments."""

    def run(args):
        # PYTHON_EXEC: the warm server's client where the session has one (tests/conftest.py), a fork
        # of the imported stack instead of seconds of imports
        python = os.environ.get("PYTHON_EXEC", sys.executable)
        done = subprocess.run([python, "-m", "recipekit.testing.axolotl_cli_probe", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["exit_code"] == 0, result["output"]
        return result["seen"]

    return run


def test_axolotl_cli_turns_the_fsdp2_flags_into_the_launcher_keys(axolotl_cli):
    """The documented flags, parsed by `axolotl train` itself, are exactly fsdp2.yml's keys."""
    keys = launch_overrides(LAUNCH_DIR / "fsdp2.yml")
    seen = axolotl_cli(["train", "recipes/supervisor_stage1.yml", *cli_flags(keys), "--", "--num_processes", "8"])
    # load_cfg coerces the strings and splits `a__b` into cfg.a.b; the rest are train's own options
    assert {key: value for key, value in seen["coerced"].items() if key.startswith("fsdp")} == {
        "fsdp_version": keys["fsdp_version"],
        **{f"fsdp_config__{key}": value for key, value in keys["fsdp_config"].items()},
    }
    assert seen["launcher"] == "accelerate" and seen["launcher_args"] == ["--num_processes", "8"]


def test_slurm_job_maps_the_allocation_onto_torchrun(tmp_path, axolotl_cli):
    """slurm.sbatch under stand-ins for srun and scontrol: what srun would run on every node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\nprintf "gpu-node-07\\ngpu-node-08\\n"\n')
    (bin_dir / "srun").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
           "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8", "SLURM_JOB_ID": "4242"}
    done = subprocess.run(["bash", str(LAUNCH_DIR / "slurm.sbatch"), "recipes/reward_ja_3b.yml",
                           "--deepspeed", "recipes/launch/zero2.json"],
                          env=env, capture_output=True, text=True, check=True)
    srun_args = done.stdout.splitlines()
    assert srun_args[:3] == ["--kill-on-bad-exit=1", "axolotl", "train"]
    seen = axolotl_cli(srun_args[2:])
    assert seen["config"] == "recipes/reward_ja_3b.yml"
    assert seen["kwargs"]["deepspeed"] == "recipes/launch/zero2.json"
    assert seen["launcher"] == "torchrun"
    assert seen["launcher_args"] == ["--nnodes", "2", "--nproc_per_node", "8", "--rdzv_backend", "c10d",
                                     "--rdzv_endpoint", "gpu-node-07:29500", "--rdzv_id", "4242"]


FSDP2_FLAGS = cli_flags(launch_overrides(LAUNCH_DIR / "fsdp2.yml"))


@pytest.mark.parametrize(("recipe", "options", "message"), [
    ("sppo_gemma2_9b", ["--deepspeed", "recipes/launch/zero3_offload.json"],
     "so optimizer: rmsprop never runs. Use recipes/launch/zero3.json"),
    ("supervisor_stage1", ["--deepspeed", "recipes/launch/zero3.json"], MUON_DEEPSPEED[1]),
    # the recipe's own deepspeed key (dropped by the CPU switches, so given back here) plus the FSDP2 flags
    ("sppo_gemma2_9b", ["--deepspeed", "recipes/launch/zero3.json", *FSDP2_FLAGS], TWO_ENGINES[1]),
    # a crash on the GPUs too (tests/training/test_deepspeed_recipes.py ran it to the crash on two CPU processes)
    ("reward_ja_3b", ["--deepspeed", "recipes/launch/zero3.json"], REWARD_ZERO3[1]),
], ids=["cpu-adam", "muon-deepspeed", "two-engines", "reward-zero3"])
@pytest.mark.train
def test_axolotl_train_stops_at_config_validation(recipe, options, message, tmp_path):
    """The real `axolotl train RECIPE OPTIONS` exits non-zero with the reason before it reads any dataset
    or model: the ones given here do not exist, and it never says so."""
    recipe = RECIPES_DIR / f"{recipe}.yml"
    config = load_recipe(recipe)
    missing = tmp_path / "missing"
    overrides = cpu_run_overrides(config, base_model=str(missing / "model"), workdir=tmp_path, steps=1,
                                  dataset_paths=[str(missing / "data.jsonl")] * len(config["datasets"]))
    config_path = dump_config(apply_overrides(config, overrides), tmp_path / "run.yml")
    log = tmp_path / "train.log"
    with pytest.raises(AxolotlError, match=r"exited [1-9]"):
        run_axolotl("train", config_path, log, cwd=REPO_ROOT, timeout=600, options=options)
    text = " ".join(log.read_text().split())
    assert message in text
    assert "No such file" not in text and "not found" not in text.lower()


def test_muon_on_several_gpus_is_axolotls_distributed_muon(tiny_model):
    """What the engines table says of Muon under FSDP2: on more than one process Axolotl builds its
    DistMuon, with no Nesterov momentum and steps scaled by sqrt(rows / cols), where the one-GPU Muon
    the supervisor recipes were set for scales by 0.2 x sqrt(max(rows, cols)) (tests/supervisor/test_muon.py)."""
    from axolotl.contribs.mit.muon.dist_muon import DistMuonOptimizerFactory, adjust_lr_spectral_norm
    from axolotl.utils.distributed import _get_parallel_config_kwargs
    from transformers import AutoModelForCausalLM

    # every multi-process run gets a device mesh, which is what selects DistMuon (with FSDP or without)
    for fsdp in (True, False):
        assert _get_parallel_config_kwargs(8, None, None, None, None, fsdp) == {"dp_shard_size": 8}
    model = AutoModelForCausalLM.from_pretrained(tiny_model("gemma4"))
    optimizer = DistMuonOptimizerFactory()(model, None, lr=1e-3, weight_decay=0.0, device_mesh=None)
    assert optimizer.defaults["nesterov"] is False and optimizer.defaults["adjust_lr"] == "spectral_norm"
    # a LoRA A matrix of rank 16 on a 3840-wide layer: a step 192 times smaller than on one GPU
    distributed, one_gpu = adjust_lr_spectral_norm(1.0, (16, 3840), flatten=False), 0.2 * 3840 ** 0.5
    assert one_gpu / distributed == pytest.approx(192)
