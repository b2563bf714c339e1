"""An Axolotl plugin that crashes a training run right after it saved a checkpoint, as a kill would.

    plugins: [..., recipekit.testing.crash.CrashAfterSavePlugin]
    RECIPEKIT_CRASH_AFTER_STEP=N axolotl train CONFIG

The process SIGKILLs itself in the trainer's on_save callback of its first save at step N or
later: that checkpoint is complete on disk, nothing after it is written, and no handler or
clean-up runs. Where the crash happens no longer depends on how fast a watcher polls.

In a run of several processes every rank does so, once all have reached the callback: each
rank writes its own part of a checkpoint (DeepSpeed ZeRO: its optimiser partition, its RNG
state), and a rank killed first would have the launcher stop the others mid-write. torchrun
then reports its workers killed (exit code -9) and exits 1.
"""

from __future__ import annotations

import os
import signal

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

CRASH_PLUGIN = "recipekit.testing.crash.CrashAfterSavePlugin"
CRASH_STEP_VAR = "RECIPEKIT_CRASH_AFTER_STEP"


class _CrashAfterSave(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            if torch.distributed.is_initialized():
                torch.distributed.barrier()  # every rank's part of the checkpoint is written
            os.kill(os.getpid(), signal.SIGKILL)


class CrashAfterSavePlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        step = os.environ.get(CRASH_STEP_VAR)
        return [_CrashAfterSave(int(step))] if step else []
