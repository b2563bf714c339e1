"""Attention kernels: models that soft-cap their attention logits (Gemma 2) load with one that applies the cap."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Gemma2Config,
    Gemma3Config,
    LlamaConfig,
)

from recipekit.checkpoints.load import attention_implementation, load_model
from recipekit.generation.engine import load_chat_model
from recipekit.reward.scoring import load_reward_model
from recipekit.templates.chat_format import inference_prompt, prompt_token_ids

SOFTCAP = 1.0


@pytest.mark.parametrize("config, expected", [
    (Gemma2Config(attn_logit_softcapping=SOFTCAP), "eager"),
    (Gemma2Config(attn_logit_softcapping=None), None),
    (LlamaConfig(), None),
    (Gemma3Config(text_config={"attn_logit_softcapping": SOFTCAP}), "eager"),  # nested text config
    (Gemma3Config(), None),
])
def test_chooser_on_cpu(config, expected):
    assert attention_implementation(config, "cpu", None) == expected


@pytest.mark.parametrize("flash_installed, dtype, expected", [
    (True, torch.bfloat16, "flash_attention_2"),
    (True, None, "flash_attention_2"),  # the checkpoint's own dtype, bfloat16 here
    (True, torch.float32, "eager"),  # flash-attention runs in half precision only
    (False, torch.bfloat16, "eager"),
])
def test_chooser_on_cuda(monkeypatch, flash_installed, dtype, expected):
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: flash_installed)
    config = Gemma2Config(attn_logit_softcapping=SOFTCAP, dtype=torch.bfloat16)
    assert attention_implementation(config, "cuda", dtype) == expected


@pytest.fixture(scope="module")
def softcapped(tiny_model, tmp_path_factory):
    """{task: path} of tiny Gemma 2 copies whose attention scores exceed a small soft-cap.

    Random init keeps the scores far below Gemma 2's real cap of 50, so the cap is lowered
    and the queries scaled up until it bites, as it does in the trained model.
    """
    paths = {}
    for task, cls in (("causal_lm", AutoModelForCausalLM), ("seq_cls", AutoModelForSequenceClassification)):
        source = tiny_model("gemma2", task)
        model = cls.from_pretrained(source, dtype=torch.float32)
        model.config.attn_logit_softcapping = SOFTCAP
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "q_proj" in name:
                    weight.mul_(10)
        paths[task] = tmp_path_factory.mktemp(f"gemma2-softcap-{task}")
        model.save_pretrained(paths[task])
        AutoTokenizer.from_pretrained(source).save_pretrained(paths[task])
    return paths


def _logits(model, path):
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = inference_prompt(tokenizer, [{"role": "user", "content": "Where is my order? It is three days late."}])
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt_token_ids(tokenizer, prompt)])).logits


@pytest.mark.parametrize("task, load", [
    ("causal_lm", lambda path: load_chat_model(str(path), dtype="float32", device="cpu")[0]),  # generation, judge
    ("causal_lm", lambda path: load_model(path, None, "cpu")),  # merge and 4-bit export checks
    ("seq_cls", lambda path: load_reward_model(str(path), device="cpu")[0]),  # reward scoring, SPPO ranker
], ids=["load_chat_model", "load_model", "load_reward_model"])
def test_softcapped_model_computes_what_eager_computes(softcapped, task, load):
    path = softcapped[task]
    cls = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    reference = {impl: _logits(cls.from_pretrained(path, attn_implementation=impl).eval(), path)
                 for impl in ("eager", "sdpa")}
    # The copy is only a test if SDPA, which skips the cap, visibly computes something else.
    assert (reference["sdpa"] - reference["eager"]).abs().max() > 1e-4

    torch.testing.assert_close(_logits(load(path), path), reference["eager"], rtol=0, atol=1e-6)
