"""Axolotl plugin that writes manifest.json into a training run's output directory.

Recipes list it under `plugins:`, so `axolotl train` itself records the resolved config,
git revision, package versions, data file hashes and seed, with no wrapper script.
"""

from __future__ import annotations

from pathlib import Path

from axolotl.integrations.base import BasePlugin

from recipekit.manifest import write_manifest

PLUGIN_NAME = "recipekit.axolotl_manifest.ManifestPlugin"


def _dataset_files(cfg) -> list[str]:
    paths = [str(d.get("path")) for d in (cfg.get("datasets") or []) + (cfg.get("test_datasets") or [])]
    return [p for p in paths if Path(p).is_file()]


class ManifestPlugin(BasePlugin):
    """Writes OUTPUT_DIR/manifest.json once the trainer exists (before the first step)."""

    def post_trainer_create(self, cfg, trainer):
        if not trainer.is_world_process_zero():
            return
        config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        write_manifest(
            cfg.output_dir,
            config=config,
            inputs=_dataset_files(cfg),
            seed=cfg.get("seed"),
            extra={"step": "axolotl train", "base_model": cfg.get("base_model")},
        )
