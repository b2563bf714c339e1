"""FSDP2 through `axolotl train` on CPU processes (torchrun, gloo), for CpuDataParallelPlugin.

Two places in Axolotl 0.19 and accelerate 1.13 assume an accelerator for FSDP2, and neither has a
config key; both are patched here, in the training processes of a test run only:

- Axolotl builds every FSDP2 run's device mesh on "cuda" (`build_parallelism_config` in
  axolotl/utils/distributed.py calls `ParallelismConfig.build_device_mesh("cuda")`, from the model
  loader's `_set_parallel_config` and, for Muon, the trainer builder). On a CPU build of torch the
  mesh's `torch.cuda.set_device` stops the load: "module 'torch._C' has no attribute
  '_cuda_setDevice'". Where there is no CUDA the mesh is built on "cpu" instead.
- accelerate makes a run FSDP only from an accelerator's distributed type (MULTI_GPU and kin, in
  `AcceleratorState.__init__`); CPU processes stay MULTI_CPU, the trainer's FSDP plugin is dropped
  and the model trained under DistributedDataParallel, whole on every rank, until Axolotl's final
  save asks for the missing plugin ("`AcceleratorState` object has no attribute `fsdp_plugin`",
  axolotl/train.py, save_trained_model). Given an FSDP plugin, a MULTI_CPU state is made FSDP
  here, as accelerate makes a MULTI_GPU one.

The rest is FSDP2's own: with no parallelism config on the accelerator, `fully_shard` shards over
its default mesh, which on CPU is a "cpu" mesh of every process.
"""

from __future__ import annotations

import torch


def _build_device_mesh_on_cpu() -> None:
    from accelerate.parallelism_config import ParallelismConfig

    build = ParallelismConfig.build_device_mesh

    def build_device_mesh(self, device_type):
        return build(self, "cpu" if device_type == "cuda" and not torch.cuda.is_available() else device_type)

    ParallelismConfig.build_device_mesh = build_device_mesh


def _fsdp_from_cpu_processes() -> None:
    from accelerate.state import AcceleratorState, DistributedType, PartialState

    init = AcceleratorState.__init__

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # what AcceleratorState.__init__ does for an accelerator's distributed type
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type

    AcceleratorState.__init__ = __init__


_patched = False


def allow_fsdp2_on_cpu() -> None:
    """Patch both places (once per process)."""
    global _patched
    if not _patched:
        _build_device_mesh_on_cpu()
        _fsdp_from_cpu_processes()
        _patched = True
