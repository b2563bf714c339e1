"""A packed epoch's batches depend on the seed and the epoch alone, and the resume wrapper passes the epoch on."""

from __future__ import annotations

import numpy as np
import torch
from accelerate.data_loader import SkipBatchSampler
from axolotl.utils.dict import DictDefault
from axolotl.utils.samplers.multipack import MultipackBatchSampler
from torch.utils.data import RandomSampler

from recipekit.paths import RECIPES_DIR
from recipekit.training.packing_order import PLUGIN_NAME, PackingOrderPlugin, seed_packing_order
from recipekit.training.recipe_config import load_recipe


def packed(lengths, seed: int = 7) -> MultipackBatchSampler:
    sampler = MultipackBatchSampler(RandomSampler(range(len(lengths))), batch_size=1, batch_max_len=256,
                                    lengths=lengths, bin_size=64, group_size=100_000, num_processes=1)
    len(sampler)  # as Axolotl does when it builds the sampler
    return seed_packing_order(sampler, seed)


def test_every_packing_of_an_epoch_is_the_same_whatever_the_global_random_state():
    lengths = np.random.default_rng(0).integers(8, 120, size=300)
    torch.manual_seed(1)
    first = list(packed(lengths))
    torch.manual_seed(2)
    again = packed(lengths)
    assert list(again) == first
    again.set_epoch(0)  # what an uninterrupted run does at the epoch's start: pack again
    torch.rand(10)
    assert list(again) == first
    again.set_epoch(1)  # another epoch, another order
    assert list(again) != first


def test_the_resume_wrapper_passes_the_epoch_to_the_sampler_it_wraps():
    class Trainer:
        class args:
            data_seed, seed = None, 3

        def _get_train_sampler(self, *args):
            return None

    PackingOrderPlugin().post_trainer_create(DictDefault(sample_packing=True), Trainer())
    lengths = np.random.default_rng(0).integers(8, 120, size=300)
    sampler = packed(lengths)
    epoch_one = packed(lengths)
    epoch_one.set_epoch(1)
    skipping = SkipBatchSampler(sampler, skip_batches=2)
    skipping.set_epoch(1)
    assert list(skipping) == list(epoch_one)[2:]


def test_every_packing_recipe_lists_the_plugin():
    packed = [recipe for recipe in sorted(RECIPES_DIR.glob("*.yml")) if load_recipe(recipe).get("sample_packing")]
    assert packed, "no recipe packs"
    for recipe in packed:
        assert PLUGIN_NAME in (load_recipe(recipe).get("plugins") or []), f"{recipe.name} packs without {PLUGIN_NAME}"
