"""What a recipe needs changed to run on a CPU-only machine, and the overrides of a short CPU run.

Any user without a GPU needs these (the tests, the demo, `recipekit.sppo.driver --cpu`): the
recipe is kept as written and these are layered on top as overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipekit.checkpoints.load import attention_implementation
from recipekit.training.recipe_config import DELETE

# What needs CUDA, switched off for CPU runs.
CPU_SWITCHES: dict[str, Any] = {
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "load_in_8bit": False,
    "load_in_4bit": False,
    "gradient_checkpointing": False,
    "torch_compile": False,
    "deepspeed": DELETE,
    "fsdp": DELETE,
    "fsdp_config": DELETE,
    "flash_attention": DELETE,
    "gemma4_hybrid_attn_impl": DELETE,  # flash-attn on Gemma 4's sliding layers
    "flash_attn_cross_entropy": DELETE,
    "flash_attn_rms_norm": DELETE,
    "xformers_attention": DELETE,
}
# 8-bit and paged optimisers come from bitsandbytes' CUDA kernels.
CPU_OPTIMIZER_SWAPS = {
    "adamw_bnb_8bit": "adamw_torch",
    "adamw_8bit": "adamw_torch",
    "paged_adamw_8bit": "adamw_torch",
    "paged_adamw_32bit": "adamw_torch",
    "ademamix_8bit": "ademamix",
    "paged_ademamix_8bit": "ademamix",
    "paged_ademamix_32bit": "ademamix",
    "rmsprop_bnb": "rmsprop",
    "rmsprop_bnb_8bit": "rmsprop",
    "rmsprop_bnb_32bit": "rmsprop",
}
CUDA_ONLY_ATTENTION = {"flash_attention_2", "flash_attention_3", "flex_attention", "xformers", "sage"}
CUDA_ONLY_PLUGIN_MARKERS = ("liger", "cut_cross_entropy")


def cpu_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """The overrides that let `config` run on a CPU-only machine, and nothing more."""
    overrides = {key: value for key, value in CPU_SWITCHES.items() if key in config or value is not DELETE}
    optimizer = config.get("optimizer")
    if optimizer in CPU_OPTIMIZER_SWAPS:
        overrides["optimizer"] = CPU_OPTIMIZER_SWAPS[optimizer]
    if config.get("attn_implementation") in CUDA_ONLY_ATTENTION or config.get("flash_attention"):
        overrides["attn_implementation"] = "sdpa"
    plugins = config.get("plugins") or []
    kept = [p for p in plugins if not any(marker in p.lower() for marker in CUDA_ONLY_PLUGIN_MARKERS)]
    if kept != plugins:
        overrides["plugins"] = kept or DELETE
        for key in config:
            if key.startswith(("liger_", "cut_cross_entropy")):
                overrides[key] = DELETE
    return overrides


# Switches of the trackers that need an account and the network; TensorBoard (local files) stays on.
HOSTED_TRACKER_KEYS = ("use_wandb", "wandb_project", "use_mlflow", "mlflow_experiment_name", "mlflow_tracking_uri",
                       "use_comet", "comet_project_name")


def short_run_overrides(config: dict[str, Any], *, base_model: str, dataset_paths: list[str], workdir: Path,
                        steps: int, sequence_len: int = 256, micro_batch_size: int = 2) -> dict[str, Any]:
    """Overrides for a short CPU run of `config`: model, data, length, steps, CPU switches.

    Everything else in the recipe (template, masking, adapter, optimiser, schedule type,
    added tokens) is kept, so the short run exercises the recipe's own code paths.
    """
    datasets = [{**entry, "path": path} for entry, path in zip(config.get("datasets") or [], dataset_paths)]
    switches = cpu_overrides(config)
    # A CUDA kernel swapped out: keep applying a soft-cap (Gemma 2). A model that is not on disk
    # is left for Axolotl to report, after its config checks.
    if "attn_implementation" in switches and (Path(base_model) / "config.json").is_file():
        from transformers import AutoConfig

        capped = attention_implementation(AutoConfig.from_pretrained(base_model), "cpu", None)
        switches["attn_implementation"] = capped or switches["attn_implementation"]
    return {
        **switches,
        "base_model": base_model,
        "base_model_config": DELETE,
        "tokenizer_config": DELETE,
        "datasets": datasets,
        "test_datasets": DELETE,
        "val_set_size": 0.0,
        "sequence_len": min(int(config.get("sequence_len", sequence_len)), sequence_len),
        "max_steps": steps,
        "micro_batch_size": min(int(config.get("micro_batch_size", 1)), micro_batch_size),
        "gradient_accumulation_steps": 1,
        "warmup_steps": DELETE,
        "warmup_ratio": DELETE,
        "output_dir": str(workdir / "output"),
        "dataset_prepared_path": str(workdir / "prepared"),
        "save_strategy": "no",
        "save_steps": DELETE,
        "eval_strategy": DELETE,
        "evals_per_epoch": DELETE,
        "eval_steps": DELETE,
        "logging_steps": 1,
        "hub_model_id": DELETE,
        "hub_strategy": DELETE,
        "push_dataset_to_hub": DELETE,
        **{key: DELETE for key in HOSTED_TRACKER_KEYS},
        "dataset_num_proc": 1,
    }
