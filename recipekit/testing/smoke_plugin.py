"""Axolotl plugin for CPU runs: lets a run say where Axolotl loads the processor from.

Axolotl loads a processor for every model type it counts as multimodal, from
`processor_config` (default: the base model), but its config schema does not declare that
key, so validation drops it from a YAML file. This plugin declares it. The smoke runner
adds both only when a checkpoint's processor cannot be loaded on CPU (recipekit.testing.smoke).
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel


class ProcessorConfigArgs(BaseModel):
    processor_config: str | None = None


class ProcessorConfigPlugin(BasePlugin):
    def get_input_args(self) -> str:
        return "recipekit.testing.smoke_plugin.ProcessorConfigArgs"
