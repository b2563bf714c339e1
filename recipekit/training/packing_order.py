"""Axolotl plugin that makes a packed run's row order a function of (seed, epoch) alone.

Axolotl's multipack sampler draws its row order from the global random state each time it
packs, and it packs several times before training (to estimate its length) and again when the
epoch starts. A run resumed from a checkpoint skips the epoch's first batches on a wrapper
that hides the epoch from the sampler, so it trains on the order packed at start-up, not the
one the uninterrupted run used: some rows of the resumed epoch train twice and others not at
all. With this plugin every packing of an epoch draws the same permutation, seeded by the
run's data seed (else its seed) plus the epoch, and the epoch reaches the sampler through the
resume wrapper, so a resumed run sees exactly the batches the uninterrupted one did.
"""

from __future__ import annotations

from typing import Iterator

import torch
from accelerate.data_loader import SkipBatchSampler
from axolotl.integrations.base import BasePlugin
from axolotl.utils.samplers.multipack import MultipackBatchSampler
from torch.utils.data import RandomSampler, Sampler

PLUGIN_NAME = "recipekit.training.packing_order.PackingOrderPlugin"


class EpochSeededSampler(Sampler[int]):
    """A permutation of range(n) seeded by `seed` plus the epoch its multipack sampler is in."""

    def __init__(self, n: int, seed: int, owner: MultipackBatchSampler):
        self.n, self.seed, self.owner = n, seed, owner

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.owner.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def seed_packing_order(sampler, seed: int):
    """Give a multipack sampler over a random order the epoch-seeded order instead (other samplers pass)."""
    if isinstance(sampler, MultipackBatchSampler) and isinstance(sampler.sampler, RandomSampler):
        sampler.sampler = EpochSeededSampler(len(sampler.sampler), seed, sampler)
        # Axolotl measured the length on the old order: measure it again on this one
        sampler._batches, sampler._len_across_ranks = None, None
        len(sampler)
    return sampler


def _forward_set_epoch(self, epoch: int) -> None:
    if hasattr(self.batch_sampler, "set_epoch"):
        self.batch_sampler.set_epoch(epoch)


class PackingOrderPlugin(BasePlugin):
    def post_trainer_create(self, cfg, trainer):
        if not cfg.sample_packing:
            return
        # accelerate's resume wrapper has no set_epoch: forward it to the sampler it wraps
        if not hasattr(SkipBatchSampler, "set_epoch"):
            SkipBatchSampler.set_epoch = _forward_set_epoch
        seed = trainer.args.data_seed if trainer.args.data_seed is not None else trainer.args.seed
        create = trainer._get_train_sampler

        def epoch_seeded(*args, **kwargs):
            return seed_packing_order(create(*args, **kwargs), seed)

        trainer._get_train_sampler = epoch_seeded
