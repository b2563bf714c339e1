"""The tiny offline models: real architectures, real special tokens, deterministic builds."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
)

from recipekit.templates.special_tokens import backfill_sentinels
from recipekit.testing.tiny_models import FAMILIES, family_for_base_model, tiny_model_path

# What AutoModelForCausalLM builds for each seed card's real checkpoint.
EXPECTED_ARCH = {
    "gemma4": ("gemma4_unified", "Gemma4UnifiedForConditionalGeneration"),
    "gemma3": ("gemma3", "Gemma3ForConditionalGeneration"),
    "gemma2": ("gemma2", "Gemma2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
    "qwen3_backfill": ("qwen3", "Qwen3ForCausalLM"),
    "llama": ("llama", "LlamaForCausalLM"),
}
REAL_SPECIAL_TOKENS = {
    "gemma4": ["<bos>", "<|turn>", "<turn|>", "<|channel>", "<channel|>"],
    "gemma3": ["<bos>", "<start_of_turn>", "<end_of_turn>"],
    "gemma2": ["<bos>", "<start_of_turn>", "<end_of_turn>"],
    "qwen3": ["<|im_start|>", "<|im_end|>"],
    "qwen3_backfill": ["<|im_start|>", "<|im_end|>", *backfill_sentinels()],
    "llama": ["<s>", "</s>", "<|user|>", "<|assistant|>"],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_architecture_tokens_and_template(family):
    path = tiny_model_path(family)
    config = AutoConfig.from_pretrained(path)
    model_type, arch = EXPECTED_ARCH[family]
    assert config.model_type == model_type
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == arch
    assert sum(p.numel() for p in model.parameters()) < 2_000_000

    tokenizer = AutoTokenizer.from_pretrained(path)
    for token in REAL_SPECIAL_TOKENS[family]:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token} is not a single token in {family}"
        assert ids[0] != tokenizer.unk_token_id
    assert len(tokenizer) == config.get_text_config().vocab_size

    messages = [{"role": "user", "content": "세탁기 보증 기간은? warranty?"}, {"role": "assistant", "content": "1년입니다."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert FAMILIES[family].end_of_turn in text
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == text  # byte-level BPE round-trips every script
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], config.get_text_config().vocab_size)
    assert torch.isfinite(logits).all()


def _weight_names(path) -> set[str]:
    with safe_open(path / "model.safetensors", framework="pt") as handle:
        return set(handle.keys())


# Names on disk are the released checkpoints' layout; transformers renames them to its
# module names (model.embed_vision.*, model.language_model.*) when it loads them.
def test_gemma4_has_the_real_checkpoints_weight_names_and_image_path():
    path = tiny_model_path("gemma4")
    names = _weight_names(path)
    assert "model.language_model.layers.1.self_attn.q_proj.weight" in names
    vision = {"patch_ln1.weight", "patch_ln1.bias", "patch_dense.weight", "patch_dense.bias", "patch_ln2.weight",
              "patch_ln2.bias", "pos_embedding", "pos_norm.weight", "pos_norm.bias"}
    # lm_head is tied to the embeddings, as in the real checkpoint
    assert {n for n in names if not n.startswith("model.language_model.")} == {
        *(f"model.vision_embedder.{n}" for n in vision), "model.embed_vision.embedding_projection.weight"}
    config = AutoConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    for field, attr in [("image_token_id", "image_token"), ("boi_token_id", "boi_token"), ("eoi_token_id", "eoi_token")]:
        assert getattr(config, field) == tokenizer.convert_tokens_to_ids(getattr(tokenizer, attr))
    # The processor needs torchvision, so check its file against the vision tower instead of loading it.
    processor = json.loads((path / "processor_config.json").read_text())
    assert processor["processor_class"] == "Gemma4UnifiedProcessor"
    image = processor["image_processor"]
    assert (image["patch_size"], image["pooling_kernel_size"]) == (
        config.vision_config.patch_size, config.vision_config.pooling_kernel_size)
    assert image["max_soft_tokens"] <= config.vision_config.mm_posemb_size

    # Four merged patches in a 2x2 grid, between the image markers: the pixels reach the text after them.
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = torch.tensor([[tokenizer.bos_token_id, config.boi_token_id, *[config.image_token_id] * 4,
                         config.eoi_token_id, tokenizer.convert_tokens_to_ids("<|turn>")]])
    positions = torch.tensor([[[0, 0], [1, 0], [0, 1], [1, 1]]])
    patch_dim = config.vision_config.model_patch_size ** 2 * 3
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first, second = (model(input_ids=ids, image_position_ids=positions,
                               pixel_values=torch.rand(1, 4, patch_dim, generator=generator)).logits for _ in range(2))
    assert torch.isfinite(first).all()
    assert not torch.allclose(first[0, -1], second[0, -1])


def test_gemma3_has_a_siglip_tower_and_a_processor_that_loads_without_torchvision():
    path = tiny_model_path("gemma3")
    names = _weight_names(path)
    assert "language_model.model.layers.1.self_attn.q_proj.weight" in names
    assert "vision_tower.encoder.layers.1.self_attn.q_proj.weight" in names
    assert "multi_modal_projector.mm_input_projection_weight" in names
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor).__name__ == "Gemma3Processor"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    inputs = processor(text=[f"look {processor.tokenizer.boi_token} here"], images=[[image]], return_tensors="pt")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    image_tokens = int((inputs.input_ids == model.config.image_token_index).sum())
    assert image_tokens == model.config.mm_tokens_per_image == 4
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_sequence_classification_variant():
    path = tiny_model_path("llama", task="seq_cls")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1


def _weights_digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_builds_are_deterministic(tmp_path, monkeypatch):
    first = tiny_model_path("gemma4")
    monkeypatch.setenv("RECIPEKIT_CACHE", str(tmp_path))
    second = tiny_model_path("gemma4")
    assert first != second and first.name == second.name
    assert _weights_digest(first) == _weights_digest(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_seed_base_models_map_to_families():
    assert family_for_base_model("google/gemma-4-12B-it") == "gemma4"
    assert family_for_base_model("google/gemma-3-4b-it") == "gemma3"
    assert family_for_base_model("google/gemma-2-9b-it") == "gemma2"
    assert family_for_base_model("Qwen/Qwen3-4B") == "qwen3"
    assert family_for_base_model("sbintuitions/sarashina2.2-3b-instruct-v0.1") == "llama"
    with pytest.raises(KeyError, match="no tiny family"):
        family_for_base_model("mistralai/Mistral-7B")
