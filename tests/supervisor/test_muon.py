"""What Axolotl's `optimizer: muon` really does, as the supervisor recipes' headers state it.

The card says "Muon on 2-D matrices + AdamW on 1-D parameters, 1e-3 / 1e-4". Axolotl 0.19's
Muon (axolotl.contribs.mit.muon) differs in ways that change the trained model, so the
recipes document them and these tests pin them down on the optimizer Axolotl builds.
"""

from __future__ import annotations

import math

import pytest
import torch
from axolotl.contribs.mit.muon import MuonOptimizerFactory
from axolotl.contribs.mit.muon.muon import zeropower_via_newtonschulz5
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

LR = 1e-3


@pytest.fixture(autouse=True)
def eager():
    """Axolotl wraps Newton-Schulz in torch.compile; what is pinned here is its maths, which
    eager mode computes alike, without tens of seconds of compiling per shape on a CPU."""
    with torch.compiler.set_stance("force_eager"):
        yield


@pytest.fixture
def lora_model(tiny_model):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model("gemma4"))
    # the supervisor recipes: r=16, alpha=32, every linear layer, no bias
    return get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", bias="none"))


def _muon(model):
    return MuonOptimizerFactory()(model, None, lr=LR, weight_decay=0.0)


def test_every_lora_matrix_takes_muon_and_none_takes_adamw(lora_model):
    optimizer = _muon(lora_model)
    trainable = [p for p in lora_model.parameters() if p.requires_grad]
    assert trainable and all(p.ndim == 2 for p in trainable)
    assert all(optimizer.state[p]["use_muon"] for p in trainable)


def test_muon_step_is_the_learning_rate_scaled_by_matrix_shape(lora_model):
    """One step moves a matrix by lr x 0.2 x sqrt(max(rows, cols)) x NS(g + 0.95 g), not by lr x NS(g)."""
    optimizer = _muon(lora_model)
    name, param = next((n, p) for n, p in lora_model.named_parameters() if "lora_A" in n)
    for p in lora_model.parameters():
        p.grad = torch.randn_like(p) if p.requires_grad else None
    grad, before = param.grad.clone(), param.detach().clone()
    optimizer.step()
    scale = 0.2 * math.sqrt(max(param.shape))
    direction = zeropower_via_newtonschulz5(grad * 1.95, steps=5).float()  # Nesterov, momentum 0.95
    step = (before - param.detach()) / LR
    assert scale > 1.5  # the scaling is not a no-op at this shape
    torch.testing.assert_close(step, scale * direction, rtol=0.05, atol=0.05 * scale * direction.abs().max().item())


def test_one_dimensional_parameters_are_not_optimised_at_all(tiny_model):
    """A full fine-tune with Muon leaves norms and biases untouched: Axolotl's factory skips them.

    (A text-only model: Gemma 4's image embedder has a 3-D tensor, which Axolotl's Muon refuses.)"""
    model = AutoModelForCausalLM.from_pretrained(tiny_model("qwen3"))
    optimizer = _muon(model)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    one_d = [n for n, p in model.named_parameters() if p.ndim < 2]
    assert one_d and all(id(p) not in optimised for n, p in model.named_parameters() if p.ndim < 2)
