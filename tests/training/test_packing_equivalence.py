"""Packing does not change the maths: each row's loss is the same packed or padded.

Rows of different lengths are scored twice on a tiny random model: as a right-padded batch
with an attention mask, and as one packed sequence with no mask and position_ids
restarting at each row - the form Axolotl feeds the model when it packs with SDPA or eager
attention (it drops the mask; transformers then builds a block-diagonal mask from the
position_ids). The summed next-token loss of every row must agree. A second check feeds
the packed sequence with positions running on across rows: then rows see each other, and
the losses must differ, so the first check cannot pass by accident. It runs for every
recipe that packs, on the tiny model of that recipe's family (flash-attn's varlen kernel,
the recipes' GPU attention, needs CUDA; SDPA and eager are what the CPU runs use).

Finding (transformers 5.16): the block-diagonal mask is built only when no KV cache is
passed. A forward with `use_cache=True` (the config default, so any eval-mode call that
does not switch it off) creates a cache first and then the packed rows attend across
their boundaries. Training is safe because the trainer runs with use_cache off;
`test_a_kv_cache_turns_packing_detection_off` pins this behaviour so a change shows up.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from recipekit.paths import RECIPES_DIR
from recipekit.testing.smoke import resolve_tiny_model
from recipekit.testing.tiny_models import tiny_model_path
from recipekit.training.recipe_config import load_recipe

PACKED_RECIPES = [path for path in sorted(RECIPES_DIR.glob("*.yml")) if load_recipe(path).get("sample_packing")]

LENGTHS = (7, 19, 12, 25)
TOLERANCE = 1e-4


def _row_loss(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Summed next-token cross-entropy of one row (its own tokens only)."""
    return float(torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="sum"))


def _rows(vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(4, vocab, (n,), generator=generator) for n in LENGTHS]


def _padded_losses(model, rows, pad_id: int) -> list[float]:
    width = max(LENGTHS)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits
    return [_row_loss(logits[i, : len(row)], row) for i, row in enumerate(rows)]


def _packed_losses(model, rows, restart_positions: bool, use_cache: bool = False) -> list[float]:
    ids = torch.cat(rows).unsqueeze(0)
    if restart_positions:
        positions = torch.cat([torch.arange(len(r)) for r in rows]).unsqueeze(0)
    else:
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
    logits = model(input_ids=ids, position_ids=positions, use_cache=use_cache).logits[0]
    losses, start = [], 0
    for row in rows:
        losses.append(_row_loss(logits[start:start + len(row)], row))
        start += len(row)
    return losses


def test_the_conversation_recipes_pack():
    assert {path.stem for path in PACKED_RECIPES} >= {"supervisor_stage1", "supervisor_stage2",
                                                      "cs_chatbot_gemma3_4b", "reasoning_backfill_qwen3_4b"}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("recipe", PACKED_RECIPES, ids=lambda p: p.stem)
def test_packed_rows_give_the_padded_losses(recipe, attn):
    family = resolve_tiny_model(recipe, load_recipe(recipe))
    model = AutoModelForCausalLM.from_pretrained(family, attn_implementation=attn).eval()
    text_config = model.config.get_text_config()  # Gemma 4's decoder config sits inside its multimodal one
    rows = _rows(text_config.vocab_size)
    with torch.no_grad():
        padded = _padded_losses(model, rows, text_config.pad_token_id)
        packed = _packed_losses(model, rows, restart_positions=True)
        leaked = _packed_losses(model, rows, restart_positions=False)
    assert packed == pytest.approx(padded, abs=TOLERANCE, rel=TOLERANCE), (family, attn, packed, padded)
    # The first row sees nothing before it either way; every later row must change when rows leak.
    assert leaked[0] == pytest.approx(padded[0], abs=TOLERANCE)
    for later, reference in zip(leaked[1:], padded[1:]):
        assert abs(later - reference) > 1e-3, (family, attn, leaked, padded)


def test_a_kv_cache_turns_packing_detection_off():
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path("qwen3"), attn_implementation="sdpa").eval()
    rows = _rows(model.config.vocab_size)
    with torch.no_grad():
        padded = _padded_losses(model, rows, model.config.pad_token_id)
        with_cache = _packed_losses(model, rows, restart_positions=True, use_cache=True)
    assert with_cache[0] == pytest.approx(padded[0], abs=TOLERANCE)
    assert all(abs(a - b) > 1e-3 for a, b in zip(with_cache[1:], padded[1:])), (with_cache, padded)
