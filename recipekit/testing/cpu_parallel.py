"""Data-parallel runs of several CPU processes (torchrun, gloo), as the tests launch them.

`CpuDataParallelPlugin` makes `axolotl train` under torchrun one data-parallel job on
CPUs. Two things stand in the way, and neither has a config key:

- Axolotl 0.19's normalize_config sets `device_map: {"": LOCAL_RANK}` whenever WORLD_SIZE
  > 1, overwriting a `device_map` in the config and the `{"": "cpu"}` it had just chosen
  itself; transformers reads the integer as an accelerator index and the load fails.
- Axolotl's trainer rebuilds accelerate's state from the environment, where only
  ACCELERATE_USE_CPU (what `accelerate launch --cpu` sets) asks for CPU processes; without
  it each process finds no accelerator and trains alone, never wrapped in
  DistributedDataParallel, although torch.distributed is up: two runs, not one.

With a `deepspeed` config it is one DeepSpeed ZeRO job instead (DS_ACCELERATOR=cpu, gloo):
see `_start_deepspeed_state` and `GlooZeroCallback` for what that takes. With an `fsdp_config`
it is one FSDP2 job: see recipekit/testing/cpu_fsdp2.py.

`RankRecordPlugin` has every rank save, at the start and after each optimiser step, the
gradients the optimiser was given and the trainable parameters, with the process group
it ran in, the engine and optimiser it stepped through and, under ZeRO-3 or FSDP2, its share of
each parameter, to `OUTPUT_DIR/rank_record/step{N}_rank{R}.pt`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

DATA_PARALLEL_PLUGIN = "recipekit.testing.cpu_parallel.CpuDataParallelPlugin"
RECORD_PLUGIN = "recipekit.testing.cpu_parallel.RankRecordPlugin"
RECORD_DIR = "rank_record"
# What accelerate's state says of this process's place in the job.
PROCESS_KEYS = ("backend", "num_processes", "process_index", "local_process_index")
# One row per micro-batch, in file order (no shuffle): 2 processes x accumulation 2 then train what
# 1 process x accumulation 4 trains (tests/training/test_data_parallel.py says why).
SAME_ROWS = {"micro_batch_size": 1, "sequence_len": 128, "curriculum_sampling": True}


def _cpu_backend() -> str | None:
    """The backend the default process group runs CPU tensors on. A group started without naming a
    backend (Axolotl's packing code starts it, before the trainer) maps each device type to one,
    e.g. "cpu:gloo,cuda:nccl", and get_backend() then says "undefined"."""
    config = str(torch.distributed.get_backend_config())
    by_device = dict(item.split(":", 1) for item in config.split(",")) if ":" in config else {"cpu": config}
    return by_device.get("cpu")


def _start_deepspeed_state() -> None:
    """accelerate's process state for DeepSpeed on CPU processes: gloo, one rank per process.

    accelerate makes a run DeepSpeed only when it is not told the run is on CPU (ACCELERATE_USE_CPU
    gives MULTI_CPU, and the trainer then wraps the model in DistributedDataParallel, although
    ZeRO-3 has already partitioned its weights), and it finds a backend only for an accelerator:
    with none and no backend named, each rank counts itself one process of one. Named here, gloo
    goes to deepspeed.init_distributed and the state holds both ranks; the trainer keeps it
    (`accelerator_config.use_configured_state`) instead of rebuilding it from the environment.
    """
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # Axolotl sets it too, after this hook
    PartialState._reset_state()
    PartialState(backend="gloo")


class GlooZeroCallback(TrainerCallback):
    """Lets ZeRO-1/2 gather its updated weights over gloo.

    After each step ZeRO-1/2 all-gathers every rank's partition into one flat buffer per
    parameter group (`bit16_groups_flat`, which requires grad: the parameters concatenated with
    autograd on). Its step runs with autograd on, and gloo fills the buffer through views split
    from it, which autograd refuses to write in place: "Output 0 of Split is a view and is being
    modified inplace". NCCL writes the buffer directly, so on GPUs it never arises. An optimiser
    step is never differentiated (torch's own optimisers step under no_grad), so ZeRO's step is
    run under no_grad too, once the engine is built.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        optimizer = getattr(self.trainer.model_wrapped, "optimizer", None)
        if hasattr(optimizer, "bit16_groups_flat"):  # ZeRO-1/2's optimizer; ZeRO-3 gathers into plain buffers
            optimizer.step = torch.no_grad()(optimizer.step)


class CpuDataParallelPlugin(BasePlugin):
    """DDP, FSDP2 when the config sets `fsdp_config`, or DeepSpeed when it names a `deepspeed` file,
    over CPU processes with gloo; for launches of several processes only."""

    def register(self, cfg):
        if not cfg.get("deepspeed"):
            os.environ["ACCELERATE_USE_CPU"] = "true"
            if cfg.get("fsdp_config"):
                from recipekit.testing.cpu_fsdp2 import allow_fsdp2_on_cpu

                allow_fsdp2_on_cpu()
            return
        # DeepSpeed finds no accelerator here and would guess; its CPU accelerator it is.
        os.environ["DS_ACCELERATOR"] = "cpu"
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # not `axolotl preprocess`, which runs alone
            _start_deepspeed_state()
            cfg["accelerator_config"] = {**(cfg.get("accelerator_config") or {}), "use_configured_state": True}

    def load_datasets(self, cfg, preprocess=False):
        # The first plugin hook after normalize_config and before any model (policy or
        # reference) is loaded: put back the device map Axolotl chose for a CPU.
        if cfg.device == "cpu":
            cfg.device_map = {"": "cpu"}
        return None  # Axolotl loads the datasets as usual

    def get_training_args(self, cfg):
        return {"ddp_backend": "gloo"}

    def post_trainer_create(self, cfg, trainer):
        # Axolotl's trainer reads `use_configured_state` after transformers has popped it from the
        # accelerator config, so it resets the state and accelerate rebuilds it from the environment,
        # where a CPU has no backend: one process of one. Each rank would then iterate the whole
        # epoch, unsharded, and train the same rows as the other. The state is rebuilt over gloo
        # before the trainer makes its first dataloader (on GPUs the rebuilt state finds NCCL).
        if cfg.deepspeed and trainer.accelerator.num_processes != torch.distributed.get_world_size():
            from accelerate.state import AcceleratorState, PartialState

            _start_deepspeed_state()
            # the accelerator's state copied the one-process values when it was made
            AcceleratorState._shared_state.update({key: PartialState._shared_state[key] for key in PROCESS_KEYS})

    def add_callbacks_post_trainer(self, cfg, trainer):
        return [GlooZeroCallback(trainer)] if cfg.deepspeed else []


def recorded_plugins(recipe: str | Path) -> list[str]:
    """The recipe's plugins plus the rank recorder."""
    from recipekit.training.recipe_config import load_recipe

    return [*(load_recipe(recipe).get("plugins") or []), RECORD_PLUGIN]


def read_records(output_dir: str | Path, steps: int, nproc: int) -> dict[int, list[dict[str, Any]]]:
    """Every rank's record of a run, by step (0: at the start) then rank."""
    return {step: [read_record(output_dir, step, rank) for rank in range(nproc)] for step in range(steps + 1)}


def zero3_share_problems(ranks: list[dict[str, Any]]) -> list[str]:
    """What keeps the ranks' ZeRO-3 shares (one record per rank, of one step) from being disjoint
    parts that, in rank order, make up each parameter that every rank gathered; [] when they are."""
    problems = []
    if not ranks[0]["zero3_shares"] or ranks[0]["zero3_shares"].keys() != ranks[0]["params"].keys():
        return ["not every trainable parameter is a ZeRO-3 partition"]
    for name, whole in ranks[0]["params"].items():
        shares = [r["zero3_shares"][name] for r in ranks]
        if len({s.numel() for s in shares}) != 1 or shares[0].numel() >= whole.numel():
            problems.append(f"{name}: shares of {[s.numel() for s in shares]} for {whole.numel()} elements")
        elif not torch.equal(torch.cat(shares)[:whole.numel()], whole.flatten()):
            problems.append(f"{name}: the shares in rank order are not the parameter")
        elif not all(torch.equal(r["params"][name], whole) for r in ranks):
            problems.append(f"{name}: the ranks gathered different parameters")
    return problems


def fsdp2_shard_problems(ranks: list[dict[str, Any]]) -> list[str]:
    """What keeps the ranks' FSDP2 shards (one record per rank, of one step) from being disjoint row
    blocks that, in rank order, make up each parameter; [] when they are. A parameter of fewer rows
    than ranks leaves some ranks an empty shard."""
    problems = []
    if not ranks[0]["fsdp2_shards"] or ranks[0]["fsdp2_shards"].keys() != ranks[0]["params"].keys():
        return ["not every trainable parameter is an FSDP2 shard"]
    for name, whole in ranks[0]["params"].items():
        shards = [r["fsdp2_shards"][name] for r in ranks]
        if sum(s.numel() for s in shards) != whole.numel() or max(s.shape[0] for s in shards) > -(-whole.shape[0] // len(ranks)):
            problems.append(f"{name}: shards of {[tuple(s.shape) for s in shards]} for {tuple(whole.shape)}")
        elif not torch.equal(torch.cat(shards), whole):
            problems.append(f"{name}: the shards in rank order are not the parameter")
    return problems


def fsdp2_split(ranks: list[dict[str, Any]]) -> list[int]:
    """How many elements of the trainable parameters each rank holds under FSDP2."""
    return [sum(s.numel() for s in r["fsdp2_shards"].values()) for r in ranks]


def far_from(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], rel: float) -> list[str]:
    """Names of the tensors of `ours` further from `reference` than `rel` of its norm."""
    assert ours.keys() == reference.keys()
    return [name for name, ref in reference.items() if (ours[name] - ref).norm() > rel * ref.norm() + 1e-12]


def step_updates(records: dict[int, list[dict[str, Any]]], step: int, rank: int = 0) -> dict[str, torch.Tensor]:
    """What the optimiser steps up to `step` changed in each trainable parameter, as `rank` recorded it."""
    before, after = records[0][rank]["params"], records[step][rank]["params"]
    return {name: after[name] - before[name] for name in after}


def zero3_split(ranks: list[dict[str, Any]]) -> list[int]:
    """How many elements of the trainable parameters each rank holds (padding included)."""
    return [sum(s.numel() for s in r["zero3_shares"].values()) for r in ranks]


def run_summary(name: str, ranks: list[dict[str, Any]], loss: object, one_process_loss: object) -> str:
    """The line a multi-process test prints for its run (`pytest -rP` shows it): the engine (and ZeRO stage) read
    from the trainer, the elements of the trainable parameters each rank holds, the first step's loss and one
    process's."""
    shares = zero3_split(ranks) if ranks[0]["zero3_shares"] else fsdp2_split(ranks) if ranks[0].get("fsdp2_shards") \
        else None
    held = " + ".join(f"{n:,}" for n in shares) if shares else "all of them, whole, on each"
    stage = f" at ZeRO stage {ranks[0]['zero_stage']}" if ranks[0]["zero_stage"] is not None else ""
    return (f"{name}: {ranks[0]['wrapper']}{stage}; trainable elements per rank ({len(ranks)} ranks): {held}; "
            f"first step's loss {loss}, one process's {one_process_loss}")


def record_path(output_dir: str | Path, step: int, rank: int) -> Path:
    return Path(output_dir) / RECORD_DIR / f"step{step}_rank{rank}.pt"


def read_record(output_dir: str | Path, step: int, rank: int = 0) -> dict[str, Any]:
    return torch.load(record_path(output_dir, step, rank), weights_only=True)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor, as a plain CPU float32 copy; an FSDP2 parameter holds only this rank's shard
    (a ZeRO-3 one is gathered by the caller)."""
    tensor = tensor.detach()
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.float().cpu().clone()


def _engine(model) -> dict[str, Any]:
    """What wraps `model` for training, read from the object: its class and, for DeepSpeed, the ZeRO stage."""
    stage = model.zero_optimization_stage() if hasattr(model, "zero_optimization_stage") else None
    return {"wrapper": type(model).__name__, "zero_stage": stage}


def _zero3_shares(named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    """This rank's partition of each ZeRO-3 parameter (its `ds_tensor`); empty for any other engine."""
    return {name: _full(p.ds_tensor) for name, p in named if hasattr(p, "ds_tensor")}


def _fsdp2_shards(named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    """This rank's shard of each FSDP2 parameter (a DTensor's local part); empty for any other engine."""
    return {name: p.to_local().detach().float().clone() for name, p in named if hasattr(p, "to_local")}


def _fsdp2_mesh(named: list[tuple[str, torch.nn.Parameter]]) -> tuple[str, int, str] | None:
    """(device type, size, placements) of the mesh the FSDP2 parameters are sharded over; None without FSDP2."""
    meshes = {(p.device_mesh.device_type, p.device_mesh.size(), str(p.placements))
              for _, p in named if hasattr(p, "device_mesh")}
    if len(meshes) > 1:
        raise AssertionError(f"FSDP2 parameters on several meshes: {sorted(meshes)}")
    return meshes.pop() if meshes else None


class RankRecordCallback(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer
        self.grads: dict[str, torch.Tensor] = {}

    def _trainable(self):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model_wrapped)
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # after the all-reduce and the clipping: what the optimiser steps with
        self.grads = {name: _full(p.grad) for name, p in self._trainable() if p.grad is not None}

    def on_train_begin(self, args, state, control, **kwargs):
        self.on_step_end(args, state, control)

    def _params(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(every trainable parameter whole, this rank's ZeRO-3 share of each). Under ZeRO-3 the whole
        parameter is put together from every rank's share (a collective call each rank makes here),
        not read from ZeRO's own gather buffers, which its prefetching may be filling at this point."""
        trainable = self._trainable()
        shares = _zero3_shares(trainable)
        if not shares:
            return {name: _full(p) for name, p in trainable}, shares
        params = {}
        for name, p in trainable:
            parts = [torch.empty_like(p.ds_tensor) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, p.ds_tensor.detach())
            params[name] = _full(torch.cat(parts)[:p.ds_numel].view(p.ds_shape))
        return params, shares

    def on_step_end(self, args, state, control, **kwargs):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        params, shares = self._params()
        reference = getattr(self.trainer, "ref_model", None)
        record = {
            "world_size": torch.distributed.get_world_size() if distributed else 1,
            "backend": _cpu_backend() if distributed else None,
            # the processes accelerate shards each epoch's batches over (one: every rank would read them all)
            "data_shards": self.trainer.accelerator.num_processes,
            # what the trainer steps through (DistributedDataParallel, DeepSpeedEngine, or the model itself)
            **_engine(self.trainer.model_wrapped),
            # and the reference model of a preference trainer, where it has one
            "reference": _engine(reference) if reference is not None else None,
            # the optimiser that steps the weights: DeepSpeed's own (CPU Adam under offload) or the trainer's,
            # which accelerate wraps in its AcceleratedOptimizer
            "optimizer": type(getattr(self.trainer.model_wrapped, "basic_optimizer", None)
                              or getattr(self.trainer.optimizer, "optimizer", self.trainer.optimizer)).__name__,
            # whether this rank writes the saves (the trainer's should_save): rank 0 only, or the ranks race
            "should_save": args.should_save,
            "grads": self.grads,  # empty under DeepSpeed: ZeRO keeps the gradients in its own buffers
            "params": params,
            "zero3_shares": shares,
            "fsdp2_shards": _fsdp2_shards(self._trainable()),
            "fsdp2_mesh": _fsdp2_mesh(self._trainable()),
        }
        path = record_path(args.output_dir, state.global_step, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(record, path)


class RankRecordPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [RankRecordCallback(trainer)]
