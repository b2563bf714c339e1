"""Real-token fraction and forward passes per epoch, with and without sample packing.

Batches are formed the way `axolotl train` forms them, so the figures are Axolotl's own:

- without packing: a shuffled sampler, `micro_batch_size` rows per pass, each pass padded to
  its longest row rounded up to `pad_to_multiple_of` (64 unless `pad_to_sequence_len`);
- with packing: Axolotl's `MultipackBatchSampler` over the row lengths. With a varlen
  attention (flash attention) one pass is a single bin of `micro_batch_size * sequence_len`
  tokens; otherwise (SDPA, eager) a pass is `micro_batch_size` bins of `sequence_len`.
  `sample_packing` turns `pad_to_sequence_len` on, so every pass is padded to whole
  sequence lengths. The number of passes is the sampler's `len()`, which the trainer uses
  and which drops the batches beyond it.

"Computed tokens" are the positions a forward pass runs over (rows x padded length);
"real" are the rows' own tokens. Rows longer than `sequence_len` are dropped, as Axolotl does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import RandomSampler

PAD_MULTIPLE = 64  # Axolotl's default pad_to_multiple_of
BIN_SIZE = 200  # Axolotl's default sample_packing_bin_size (rows per bin)
GROUP_SIZE = 100_000  # Axolotl's default sample_packing_group_size


@dataclass(frozen=True)
class PackingFigures:
    mode: str  # "unpacked", "packed_sdpa" or "packed_varlen"
    micro_batch_size: int
    sequence_len: int
    rows: int  # rows that fit sequence_len
    rows_dropped_too_long: int
    rows_per_epoch: int  # rows the passes of one epoch actually hold
    passes: int  # forward passes (micro-batches) per epoch
    real_tokens: int
    computed_tokens: int

    @property
    def real_fraction(self) -> float:
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 0.0

    @property
    def rows_per_pass(self) -> float:
        return self.rows_per_epoch / self.passes if self.passes else 0.0

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "real_fraction": round(self.real_fraction, 4),
                "rows_per_pass": round(self.rows_per_pass, 3)}


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _fit(lengths: Sequence[int], sequence_len: int) -> tuple[np.ndarray, int]:
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) == 0 or (lengths <= 0).any():
        raise ValueError("lengths must be a non-empty list of positive token counts")
    kept = lengths[lengths <= sequence_len]
    return kept, int(len(lengths) - len(kept))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unpacked(lengths: Sequence[int], micro_batch_size: int, sequence_len: int, *,
             pad_to_sequence_len: bool = False, seed: int = 0) -> PackingFigures:
    """Shuffled micro-batches padded to their longest row (or to sequence_len)."""
    kept, dropped = _fit(lengths, sequence_len)
    multiple = _round_up(sequence_len, PAD_MULTIPLE) if pad_to_sequence_len else PAD_MULTIPLE
    order = list(RandomSampler(range(len(kept)), generator=_generator(seed)))
    computed = 0
    for start in range(0, len(order), micro_batch_size):
        batch = kept[order[start:start + micro_batch_size]]
        computed += len(batch) * _round_up(int(batch.max()), multiple)
    return PackingFigures("unpacked", micro_batch_size, sequence_len, len(kept), dropped, len(kept),
                          math.ceil(len(kept) / micro_batch_size), int(kept.sum()), computed)


def multipack_sampler(lengths: np.ndarray, micro_batch_size: int, sequence_len: int, *, varlen: bool, seed: int):
    """Axolotl's MultipackBatchSampler, set up as its trainer sets it up."""
    from axolotl.utils.samplers.multipack import MultipackBatchSampler

    batch_size, capacity = (1, micro_batch_size * sequence_len) if varlen else (micro_batch_size, sequence_len)
    return MultipackBatchSampler(
        RandomSampler(range(len(lengths)), generator=_generator(seed)),
        batch_size=batch_size,
        batch_max_len=capacity,
        lengths=lengths,
        bin_size=BIN_SIZE,
        group_size=GROUP_SIZE,
        drop_last=True,
        num_processes=1,
    )


def packed_batches(lengths: Sequence[int], micro_batch_size: int, sequence_len: int, *,
                   varlen: bool, seed: int = 0) -> tuple[list[list[list[int]]], np.ndarray, int]:
    """One epoch of Axolotl's packed batches (lists of bins of row indices) over the rows that fit."""
    kept, dropped = _fit(lengths, sequence_len)
    sampler = multipack_sampler(kept, micro_batch_size, sequence_len, varlen=varlen, seed=seed)
    return list(iter(sampler))[: len(sampler)], kept, dropped


def packed(lengths: Sequence[int], micro_batch_size: int, sequence_len: int, *,
           varlen: bool, seed: int = 0) -> PackingFigures:
    batches, kept, dropped = packed_batches(lengths, micro_batch_size, sequence_len, varlen=varlen, seed=seed)
    padded_to = _round_up(sequence_len, PAD_MULTIPLE)  # pad_to_sequence_len, on with packing
    real = computed = rows = 0
    for batch in batches:
        bin_tokens = [int(kept[bin_].sum()) for bin_ in batch]
        real += sum(bin_tokens)
        rows += sum(len(bin_) for bin_ in batch)
        computed += len(batch) * _round_up(max(bin_tokens), padded_to)
    mode = "packed_varlen" if varlen else "packed_sdpa"
    return PackingFigures(mode, micro_batch_size, sequence_len, len(kept), dropped, rows, len(batches), real, computed)


def compare(lengths: Sequence[int], micro_batch_size: int, sequence_len: int, *,
            pad_to_sequence_len: bool = False, seed: int = 0) -> list[PackingFigures]:
    """Unpacked, packed with SDPA-style bins, and packed with one varlen bin per pass."""
    return [
        unpacked(lengths, micro_batch_size, sequence_len, pad_to_sequence_len=pad_to_sequence_len, seed=seed),
        packed(lengths, micro_batch_size, sequence_len, varlen=False, seed=seed),
        packed(lengths, micro_batch_size, sequence_len, varlen=True, seed=seed),
    ]


def accumulation_for_rows(rows_per_step: float, figures: PackingFigures) -> int:
    """Gradient accumulation that keeps about `rows_per_step` rows per optimiser step."""
    return max(1, round(rows_per_step / figures.rows_per_pass)) if figures.rows_per_pass else 1
