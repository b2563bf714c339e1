"""Training throughput of supervisor stage 2: trained tokens/s, MFU and peak memory per set-up.

Each variant builds the model afresh (random weights, LoRA r=16 on all linear layers,
gradient checkpointing as in the recipe), runs a few warm-up passes, then times passes
drawn from the epoch plan of the length set: one row per pass without packing, one
Axolotl multipack bin per pass with packing. Every row trains on all its tokens (the
masking of prompt tokens does not change the compute). The optimiser is AdamW on the
adapter (the card's Muon acts on the same few million adapter weights; its cost is
negligible next to the 12B forward/backward). The projection scales the measured FLOP
rate to the whole workload: epochs x model FLOPs of every row / (FLOPs/s measured).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from recipekit.bench import flops, packing
from recipekit.bench.model_build import add_lora, build_model, missing_requirement
from recipekit.bench.report import runnable

CARD_STAGE2_SECONDS = 6 * 3600 + 2 * 60  # "Wall clock: 6h02m on a half-H200"
CARD_EPOCHS = 7
CARD_ROWS_PER_STEP = 16  # micro-batch 1 x accumulation 16


@dataclass(frozen=True)
class TrainVariant:
    name: str
    description: str
    attn_implementation: str
    packed: bool
    kernels: bool = False  # Axolotl LoRA kernels + Liger

    def unavailable(self) -> str | None:
        if self.kernels:
            return missing_requirement(cuda=True, packages=("flash_attn", "liger_kernel", "triton"))
        if self.attn_implementation.startswith("flash_attention"):
            return missing_requirement(cuda=True, packages=("flash_attn",))
        return None


TRAIN_VARIANTS = (
    TrainVariant("a_sdpa_unpacked", "card set-up: SDPA, no packing, micro-batch 1", "sdpa", packed=False),
    TrainVariant("a2_sdpa_packed", "packing with SDPA (block-diagonal mask from position_ids)", "sdpa", packed=True),
    TrainVariant("b_flash_varlen_packed", "packing with flash-attention varlen", "flash_attention_2", packed=True),
    TrainVariant("c_flash_varlen_packed_kernels", "(b) + Axolotl LoRA kernels + Liger", "flash_attention_2",
                 packed=True, kernels=True),
)


def pass_plan(lengths: Sequence[int], sequence_len: int, *, packed: bool, seed: int) -> list[list[int]]:
    """Row lengths of each forward pass of one epoch (micro-batch 1, as in the recipe)."""
    if packed:
        batches, kept, _ = packing.packed_batches(lengths, 1, sequence_len, varlen=True, seed=seed)
        return [[int(kept[i]) for i in bin_] for batch in batches for bin_ in batch]
    kept = [int(x) for x in lengths if x <= sequence_len]
    order = np.random.default_rng(seed).permutation(len(kept))
    return [[kept[i]] for i in order]


def make_inputs(row_lengths: Sequence[int], vocab_size: int, device: str, generator) -> dict[str, Any]:
    """One packed sequence of random token ids; position_ids restart at each row."""
    import torch

    total = int(sum(row_lengths))
    ids = torch.randint(4, vocab_size, (1, total), generator=generator).to(device)
    positions = torch.cat([torch.arange(n) for n in row_lengths]).unsqueeze(0).to(device)
    return {"input_ids": ids, "position_ids": positions, "labels": ids.clone()}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_variant(variant: TrainVariant, config: Any, lengths: Sequence[int], *, sequence_len: int, device: str,
                    dtype, warmup: int, steps: int, seed: int, peak_tflops: float | None) -> dict[str, Any]:
    """Time `steps` passes of `variant` after `warmup`; return its figures."""
    import torch

    plan = pass_plan(lengths, sequence_len, packed=variant.packed, seed=seed)
    if len(plan) < warmup + steps:
        raise ValueError(f"{variant.name}: {len(plan)} passes in the epoch, fewer than warmup+steps={warmup + steps}")
    rows_per_pass = sum(len(p) for p in plan) / len(plan)
    accumulation = max(1, round(CARD_ROWS_PER_STEP / rows_per_pass))
    model = build_model(config, attn_implementation=variant.attn_implementation, device=device, dtype=dtype,
                        seed=seed, liger=variant.kernels)
    n_params = flops.matmul_params(model)
    layers = flops.attention_layers(config)
    model = add_lora(model, lora_kernels=variant.kernels)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timed_rows: list[int] = []
    started = 0.0
    for index, rows in enumerate(tqdm(plan[: warmup + steps], desc=variant.name, leave=False)):
        if index == warmup:
            _sync(device)
            started = time.perf_counter()
        loss = model(**make_inputs(rows, config.vocab_size, device, generator)).loss
        (loss / accumulation).backward()
        if (index + 1) % accumulation == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if index >= warmup:
            timed_rows.extend(rows)
    _sync(device)
    seconds = time.perf_counter() - started
    timed_flops = flops.training_flops(timed_rows, n_params, layers)
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    del model, optimizer
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "variant": variant.name,
        "description": variant.description,
        "status": "measured",
        "attn_implementation": variant.attn_implementation,
        "packed": variant.packed,
        "matmul_params": n_params,
        "passes_per_epoch": len(plan),
        "rows_per_pass": round(rows_per_pass, 3),
        "gradient_accumulation_steps": accumulation,
        "timed_passes": steps,
        "timed_tokens": int(sum(timed_rows)),
        "seconds": round(seconds, 4),
        "tokens_per_second": sum(timed_rows) / seconds,
        "model_tflops_per_second": timed_flops / seconds / 1e12,
        "mfu": flops.mfu(timed_flops, seconds, peak_tflops),
        "peak_memory_gib": peak_memory,
        "_flop_rate": timed_flops / seconds,
    }


def project(result: dict[str, Any], workload_flops: float, epochs: int, versus_card: bool) -> dict[str, Any]:
    """Wall time of `epochs` over the workload at the measured FLOP rate, next to the card's.

    Only the card's workload on the real architecture is compared with the card (`versus_card`).
    """
    seconds = epochs * workload_flops / result.pop("_flop_rate")
    return {**result, "projected_stage2_seconds": seconds, "projected_stage2_hours": seconds / 3600,
            "speedup_vs_card": CARD_STAGE2_SECONDS / seconds if versus_card else None}


def run_training_suite(config: Any, lengths: Sequence[int], *, sequence_len: int, device: str, dtype,
                       warmup: int, steps: int, seed: int, peak_tflops: float | None, versus_card: bool,
                       variants: Sequence[TrainVariant] = TRAIN_VARIANTS) -> dict[str, Any]:
    """Every variant measured (or skipped with its reason) and projected to the card's stage 2."""
    layers = flops.attention_layers(config)
    results = []
    for variant in runnable(variants, results):
        result = measure_variant(variant, config, lengths, sequence_len=sequence_len, device=device, dtype=dtype,
                                 warmup=warmup, steps=steps, seed=seed, peak_tflops=peak_tflops)
        workload = flops.training_flops([x for x in lengths if x <= sequence_len], result["matmul_params"], layers)
        results.append(project(result, workload, CARD_EPOCHS, versus_card))
    return {"sequence_len": sequence_len, "epochs": CARD_EPOCHS, "card_stage2_seconds": CARD_STAGE2_SECONDS,
            "peak_bf16_tflops": peak_tflops, "variants": results}
