"""The tiny offline models: real architectures, real special tokens, deterministic builds."""

from __future__ import annotations

import hashlib

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from recipekit.special_tokens import backfill_sentinels
from recipekit.tiny_models import FAMILIES, family_for_base_model, tiny_model_path

EXPECTED_ARCH = {
    "gemma4": ("gemma4_unified_text", "Gemma4UnifiedForCausalLM"),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
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
    assert len(tokenizer) == config.vocab_size

    messages = [{"role": "user", "content": "세탁기 보증 기간은? warranty?"}, {"role": "assistant", "content": "1년입니다."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert FAMILIES[family].end_of_turn in text
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == text  # byte-level BPE round-trips every script
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], config.vocab_size)
    assert torch.isfinite(logits).all()


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
