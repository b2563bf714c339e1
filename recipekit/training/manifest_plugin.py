"""Axolotl plugin that records a training run in its output directory.

Recipes list it under `plugins:`, so `axolotl train` itself, with no wrapper script, seeds the
random state before the model is built (so the recipe's seed fixes new weights too) and writes:
manifest.json (resolved config, git revision, package versions, data file hashes, seed) before
the first step, and training_curves.png / training_curves.json (loss, learning rate, and the
reward margins and accuracies of preference and reward-model runs) after the last.

It declares one config key of its own, `data_language` (ISO 639-1): the language of the data
when it is not the recipe's (recipekit/reporting/card_facts.py), for the model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel
from transformers import set_seed

from recipekit.checkpoints.load import remove_incomplete_checkpoints
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.model_card import refresh_card
from recipekit.reporting.tables import line_panels_png, write_json

PLUGIN_NAME = "recipekit.training.manifest_plugin.ManifestPlugin"
CURVES_PNG = "training_curves.png"
CURVES_JSON = "training_curves.json"
# Figure panels and the trainer log keys each draws. DPO-style trainers (SPPO included) log
# rewards/*, the reward-model trainer margin/accuracy; eval_* keys appear when a run evaluates.
CURVE_PANELS = {
    "loss": ("loss", "eval_loss"),
    "learning rate": ("learning_rate",),
    "reward margin": ("rewards/margins", "eval_rewards/margins", "margin", "eval_margin"),
    "reward accuracy": ("rewards/accuracies", "eval_rewards/accuracies", "accuracy", "eval_accuracy"),
}


def _dataset_files(cfg) -> list[str]:
    paths = [str(d.get("path")) for d in (cfg.get("datasets") or []) + (cfg.get("test_datasets") or [])]
    return [p for p in paths if Path(p).is_file()]


def training_curves(log_history: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """{key: {"step": [...], "value": [...]}} for each CURVE_PANELS key the trainer logged."""
    curves: dict[str, dict[str, list[float]]] = {}
    for record in log_history:
        for keys in CURVE_PANELS.values():
            for key in keys:
                if isinstance(record.get(key), (int, float)):
                    series = curves.setdefault(key, {"step": [], "value": []})
                    series["step"].append(record["step"])
                    series["value"].append(float(record[key]))
    return curves


def write_training_curves(output_dir: str | Path, log_history: list[dict[str, Any]], title: str) -> None:
    curves = training_curves(log_history)
    if not curves:
        return
    write_json(Path(output_dir) / CURVES_JSON, curves)
    panels = {name: {key: (curves[key]["step"], curves[key]["value"]) for key in keys if key in curves}
              for name, keys in CURVE_PANELS.items()}
    line_panels_png({name: lines for name, lines in panels.items() if lines}, Path(output_dir) / CURVES_PNG, title)


class ManifestArgs(BaseModel):
    """Config keys the manifest records for the model card, beyond Axolotl's own."""

    data_language: str | None = None


class ManifestPlugin(BasePlugin):
    """The seed before the model loads, manifest.json once the trainer exists, the training curves
    once it has trained."""

    def get_input_args(self) -> str:
        return "recipekit.training.manifest_plugin.ManifestArgs"

    def pre_model_load(self, cfg):
        # Axolotl seeds only the trainer, which is built after the model; unseeded, new weights (LoRA
        # matrices, a reward head, rows for added tokens) would start from a different draw every run.
        if cfg.get("seed") is not None:
            set_seed(cfg.seed)

    def post_trainer_create(self, cfg, trainer):
        self._trainer = trainer  # post_train is handed the model only; the curves are in the trainer's state
        if trainer.is_world_process_zero():
            remove_incomplete_checkpoints(cfg.output_dir)
            config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
            write_manifest(
                cfg.output_dir,
                config=config,
                inputs=_dataset_files(cfg),
                seed=cfg.get("seed"),
                extra={"step": "axolotl train", "base_model": cfg.get("base_model")},
            )
        trainer.accelerator.wait_for_everyone()  # every rank then resumes from the same checkpoint

    def post_train(self, cfg, model):
        # Axolotl calls post_train twice: after trainer.train(), then after saving the model and
        # writing its own README.md. Draw the curves at the first call, the model card at the second.
        trainer, self._trainer = getattr(self, "_trainer", None), None
        if trainer is not None:
            self._main_process = trainer.is_world_process_zero()
            if self._main_process:
                # log_history comes back from the checkpoint on resume, so a resumed run plots every step.
                write_training_curves(cfg.output_dir, trainer.state.log_history, f"axolotl train: {cfg.output_dir}")
        elif getattr(self, "_main_process", False):
            refresh_card(cfg.output_dir)  # a full fine-tune's card; a LoRA adapter's is left alone
