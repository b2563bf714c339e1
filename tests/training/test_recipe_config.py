"""Overrides are applied on top of a recipe, never into it; CPU switches are minimal and correct."""

from __future__ import annotations

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing.smoke import cpu_run_overrides, resolve_tiny_model
from recipekit.training.cpu_overrides import cpu_overrides
from recipekit.training.recipe_config import (
    DELETE,
    RecipeError,
    apply_overrides,
    dump_config,
    load_recipe,
    read_header,
    validate,
)

GPU_RECIPE = {
    "base_model": "google/gemma-3-4b-it",
    "bf16": True,
    "optimizer": "adamw_bnb_8bit",
    "flash_attention": True,
    "deepspeed": "recipes/launch/zero3.json",
    "plugins": ["axolotl.integrations.liger.LigerPlugin"],
    "liger_rms_norm": True,
    "datasets": [{"path": "x.jsonl", "type": "alpaca"}],
}


def test_cpu_overrides_switch_off_cuda_parts():
    overrides = cpu_overrides(GPU_RECIPE)
    cpu = apply_overrides(GPU_RECIPE, overrides)
    assert cpu["bf16"] is False and cpu["fp16"] is False
    assert cpu["optimizer"] == "adamw_torch"
    assert cpu["attn_implementation"] == "sdpa"
    assert "flash_attention" not in cpu and "deepspeed" not in cpu
    assert "plugins" not in cpu and "liger_rms_norm" not in cpu
    assert cpu["lora_mlp_kernel"] is False and cpu["lora_qkv_kernel"] is False and cpu["lora_o_kernel"] is False
    assert GPU_RECIPE["optimizer"] == "adamw_bnb_8bit", "the recipe dict itself was changed"


def test_cpu_overrides_keep_cpu_capable_choices():
    recipe = {"optimizer": "muon", "attn_implementation": "sdpa", "plugins": ["my.Plugin"]}
    overrides = cpu_overrides(recipe)
    assert "optimizer" not in overrides and "attn_implementation" not in overrides and "plugins" not in overrides


@pytest.mark.parametrize("recipe, expected", [("sppo_gemma2_9b.yml", "eager"),
                                              ("reasoning_backfill_qwen3_4b.yml", "sdpa")])
def test_cpu_runs_swap_flash_attention_for_a_kernel_that_keeps_the_soft_cap(recipe, expected, tmp_path):
    """Gemma 2 caps its attention logits: flash-attention applies the cap on GPU, eager on CPU, SDPA never."""
    path = RECIPES_DIR / recipe
    config = load_recipe(path)
    assert config["attn_implementation"] == "flash_attention_2"
    overrides = cpu_run_overrides(config, base_model=resolve_tiny_model(path, config), dataset_paths=[],
                                  workdir=tmp_path, steps=1)
    assert overrides["attn_implementation"] == expected


def test_cpu_runs_keep_tensorboard_and_drop_the_hosted_trackers(tmp_path):
    path = RECIPES_DIR / "cs_chatbot_gemma3_4b.yml"
    tracked = {**load_recipe(path), "wandb_project": "p", "mlflow_experiment_name": "e", "comet_project_name": "c"}
    overrides = cpu_run_overrides(tracked, base_model=resolve_tiny_model(path, tracked), dataset_paths=["x.jsonl"],
                                  workdir=tmp_path, steps=1)
    cpu = validate(apply_overrides(tracked, overrides), path)
    assert cpu["use_tensorboard"] is True
    assert not any(key in cpu for key in ("wandb_project", "mlflow_experiment_name", "comet_project_name"))
    assert not any(cpu.get(key) for key in ("use_wandb", "use_mlflow", "use_comet"))


def test_apply_overrides_deletes_and_replaces():
    merged = apply_overrides({"a": 1, "b": [1]}, {"a": DELETE, "b": [2], "c": 3})
    assert merged == {"b": [2], "c": 3}


def test_validate_names_the_file_on_failure():
    with pytest.raises(RecipeError, match="bad.yml"):
        validate({"base_model": "x", "datasets": [{"path": "d.jsonl", "type": "chat_template"}],
                  "micro_batch_size": "many", "learning_rate": 1e-4, "num_epochs": 1,
                  "gradient_accumulation_steps": 1, "sequence_len": 128}, "bad.yml")


def test_load_recipe_rejects_non_mapping(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="list.yml"):
        load_recipe(path)


def test_dump_then_load_round_trips(tmp_path):
    path = dump_config({"base_model": "x", "tokens": ["<|a|>"]}, tmp_path / "c.yml")
    assert load_recipe(path) == {"base_model": "x", "tokens": ["<|a|>"]}


def test_only_a_processor_that_cannot_load_on_cpu_gives_way_to_the_tokenizer(tiny_model, tmp_path):
    """Gemma 4's processor needs torchvision (none for CPU torch); Gemma 3's loads with PIL."""
    from transformers import AutoProcessor, AutoTokenizer

    from recipekit.paths import RECIPES_DIR
    from recipekit.testing.smoke import PROCESSOR_PLUGIN, cpu_run_overrides

    config = load_recipe(RECIPES_DIR / "supervisor_stage1.yml")

    def overrides(family):
        return cpu_run_overrides(config, base_model=str(tiny_model(family)), dataset_paths=[],
                                 workdir=tmp_path / family, steps=1)

    gemma4 = overrides("gemma4")
    assert gemma4["plugins"] == [*config["plugins"], PROCESSOR_PLUGIN]
    processor = AutoProcessor.from_pretrained(gemma4["processor_config"])
    assert type(processor).__name__ == "TokenizersBackend"
    # the checkpoint's own tokenizer, media tokens and all
    assert processor.get_vocab() == AutoTokenizer.from_pretrained(tiny_model("gemma4")).get_vocab()
    assert processor.image_token == "<|image|>"
    for family in ("gemma3", "qwen3"):
        assert "processor_config" not in overrides(family) and "plugins" not in overrides(family)


def test_header_gives_description_and_deviations():
    header = read_header(RECIPES_DIR / "supervisor_stage2.yml")
    assert header.description.startswith("Supervisor, stage 2: a fresh LoRA on the merged stage-1 model")
    assert "Reproduces" not in header.description and header.source is None
    # one item per "- " bullet, its continuation lines joined, the comment marks gone
    assert header.deviations[0] == ("Muon as Axolotl 0.19 runs it, with its shape-scaled step (the recipe's "
                                    "`--- optimizer ---` comment); learning_rate stays the card's 1e-3.")
    assert not any("#" in item or "  " in item for item in header.deviations)
    assert header.deviations[1] == ("Rows longer than 4096 tokens: prep_supervisor.py clips the user text with "
                                    "the real tokenizer (the card clipped by characters); the assistant text is "
                                    "never changed.")
    assert (header.card_name, header.card_url) == (
        "shareit/cycleinstruct-gemma4-supervisor", "https://huggingface.co/shareit/cycleinstruct-gemma4-supervisor")


def test_run_configuration_keeps_the_recipe_header(tmp_path):
    recipe = RECIPES_DIR / "reward_ja_3b.yml"
    config = apply_overrides(load_recipe(recipe), {"learning_rate": 0.5})
    path = dump_config(config, tmp_path / "run.yml", source=recipe)
    assert load_recipe(path) == config
    header = read_header(path)
    assert header.source == "recipes/reward_ja_3b.yml"  # as the repository names it
    assert (header.description, header.deviations) == (read_header(recipe).description,
                                                       read_header(recipe).deviations)


@pytest.mark.parametrize("recipe", [p for p in sorted(RECIPES_DIR.glob("*.yml")) if load_recipe(p).get("sample_packing")],
                         ids=lambda p: p.stem)
def test_cpu_switches_keep_packing_with_an_attention_that_keeps_rows_apart(recipe):
    """On CPU flash-attn gives way to SDPA; the run still packs, and Axolotl drops the padding mask so
    transformers builds a block-diagonal one from the position ids (tests/training/test_packing_equivalence.py)."""
    config = load_recipe(recipe)
    assert config["attn_implementation"] == "flash_attention_2" and config.get("pad_to_sequence_len")
    cpu = validate(apply_overrides(config, cpu_overrides(config)), recipe)
    assert (cpu["sample_packing"], cpu["attn_implementation"]) == (True, "sdpa")
    assert cpu["attn_decontaminates_packing"] and "gemma4_hybrid_attn_impl" not in cpu
