"""Environment that keeps every run offline and silent: no hub downloads, no telemetry."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}


def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default: os.environ) with the offline switches set."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    return env


def go_offline() -> None:
    """Set the offline switches in this process (for tests and CPU demos)."""
    os.environ.update(OFFLINE_ENV)
