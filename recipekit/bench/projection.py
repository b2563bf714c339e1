"""Projected GPUs, memory per GPU and wall time of every recipe at its card's scale, 10x and 100x the data.

PROJECTIONS, not measurements: no GPU throughput has been measured here yet (bench/README.md),
so the speed is an assumed MFU, and token counts the cards do not publish are assumptions named
in each workload's `tokens_note`. docs/scaling.md is this module's table with the reasoning.

    python -m recipekit.bench.projection                       # the table of docs/scaling.md
    python -m recipekit.bench.projection --mfu 0.4 --gpu "B200" --gpu-memory 180

Wall time (flops.py's 6N convention, attention term left out: a few per cent at these lengths):

    hours = tokens x F x N / (GPUs x peak x MFU) / 3600
    F = 6 to train (SPPO: 6 for the policy + 2 for the frozen reference's forward), 2 to generate

Memory per GPU = model states + activations (+ the logits), in bytes:

    states per parameter: weights 2 (bf16), gradients 2, optimizer K (fp32 master copy included where the
    engine keeps one: AdamW 12, RMSprop 8, 8-bit AdamW 2); LoRA trains <1 % of the weights, so only the
    frozen bf16 weights count. DDP keeps all on every GPU; ZeRO-2 shards gradients and optimizer over the
    G GPUs; ZeRO-3 and FSDP2 shard everything; offload moves the optimizer to CPU memory.
    activations: with gradient checkpointing each layer's input (layers x s x h x 2) plus one layer
    recomputed (34 x s x h, Korthikanti et al. 2022, no attention-score term with SDPA/flash); without,
    34 x s x h per layer; s = tokens per micro-batch, h = hidden size. Logits: s x vocab x 6 (bf16 and the
    fp32 copy the loss takes). CUDA context, allocator slack and temporary buffers are not counted: keep
    10-20 % free, which is why a set-up must fit in 90 % of the GPU.

Generation (vLLM): every replica holds the bf16 weights (tensor parallel only when they do not fit) and
gives the rest of its memory to the KV cache, so more data means more replicas.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from recipekit.bench.flops import PEAK_BF16_TFLOPS
from recipekit.bench.lengths import SUPERVISOR_STAGE2, synthetic_lengths
from recipekit.reporting.tables import markdown_table

SCALES = (1, 10, 100)
DEFAULT_MFU = 0.30  # training; the supervisor card's own wall time implies 0.33 (docs/scaling.md)
DEFAULT_GENERATION_MFU = 0.08  # decode is bound by memory bandwidth, not FLOPs
DEFAULT_TARGET_HOURS = 24.0
FIT = 0.9  # share of GPU memory a set-up may plan to use
OPTIMIZER_BYTES = {"adamw_torch": 12, "rmsprop": 8, "adamw_bnb_8bit": 2, "muon": 0}


@dataclass(frozen=True)
class Model:
    name: str
    n: float  # flops.py's N: matmul weights, the output projection counted, the input embedding not
    total: float  # every weight held in memory
    hidden: int
    layers: int
    vocab: int  # 0: a one-score head instead of the vocabulary (reward model)


GEMMA4_12B = Model("gemma-4-12B-it", 11.95e9, 11.95e9, 3840, 48, 262_144)
GEMMA3_4B = Model("gemma-3-4b-it", 3.88e9, 4.30e9, 2560, 34, 262_208)  # total: with the vision tower
GEMMA2_9B = Model("gemma-2-9b-it", 9.24e9, 9.24e9, 3584, 42, 256_000)
QWEN3_4B = Model("Qwen3-4B", 4.02e9, 4.02e9, 2560, 36, 151_936)
SARASHINA_3B_RM = Model("sarashina2.2-3b (score head)", 2.83e9, 3.09e9, 2560, 32, 0)
# Architectures the benchmark can be told to insist on (bench/run.py --architecture).
ARCHITECTURES = {GEMMA4_12B.name: GEMMA4_12B}


@dataclass(frozen=True)
class Workload:
    recipe: str
    stage: str  # "train" or "generate"
    model: Model
    rows: int  # at the card's scale
    tokens_per_row: float  # tokens the model runs per row per epoch (both sides of a pair)
    tokens_note: str
    epochs: float
    flops_factor: float  # F: FLOPs per token in units of N
    optimizer: str  # "" for generation
    lora: bool
    engines: tuple[str, ...]  # launchers the recipe works with, in order of preference
    sequences_per_micro_batch: int  # per GPU and pass
    seq_len: int
    checkpointing: bool
    rows_per_step: int  # the card's rows per optimizer step
    micro_batch_rows: int  # rows per GPU and pass
    card_gpus: int
    card: str  # the card's hardware and time, as the card gives them
    frozen_copies: int = 0  # SPPO's reference model

    def tokens(self, scale: float) -> float:
        return self.rows * scale * self.tokens_per_row * self.epochs


_STAGE2_TOKENS = int(synthetic_lengths(SUPERVISOR_STAGE2).sum())  # 7,095,598

WORKLOADS = (
    Workload("supervisor_stage1", "train", GEMMA4_12B, 9_868, 300,
             "assumed 300 tokens a (question, answer) pair with its template; the card gives no lengths",
             7, 6, "muon", True, ("ddp", "fsdp2"), 1, 4096, True, 16, 1, 1, "none given"),
    Workload("supervisor_stage2", "train", GEMMA4_12B, 3_771, _STAGE2_TOKENS / 3_771,
             "bench's synthetic stage-2 set (bench/README.md): 7,095,598 tokens, mean 1,882",
             7, 6, "muon", True, ("ddp", "fsdp2"), 1, 4096, True, 16, 1, 1, "half an H200, 6 h 02 min"),
    Workload("cs_chatbot_gemma3_4b", "train", GEMMA3_4B, 26_872, 3.57e6 / 26_872,
             "the card: 26,872 pairs, about 3.57 M tokens", 1, 6, "adamw_bnb_8bit", True,
             ("ddp", "zero2", "zero3"), 4, 1024, True, 16, 4, 1, "one A100, about 30 min"),
    Workload("reasoning_backfill_qwen3_4b", "train", QWEN3_4B, 144_000, 800,
             "assumed 144,000 rows (the first dataset's name; the second's size is not given) x 800 tokens",
             4, 6, "adamw_bnb_8bit", False, ("ddp", "zero2", "zero3"), 2, 1024, False, 4, 2, 1,
             "one H100, time not given"),
    Workload("reward_ja_3b", "train", SARASHINA_3B_RM, 601_348, 2 * 600,
             "the card's 601,348 pairs; assumed 600 tokens a side (prompt + response)", 1, 6, "adamw_torch",
             False, ("ddp", "zero2", "zero3", "zero3_offload"), 4, 4096, True, 32, 2, 1,
             "one A100 80 GB, time not given"),
    Workload("sppo_gemma2_9b", "train", GEMMA2_9B, 60_000, 2 * 650,
             "3 iterations x 20,000 prompts, one pair each; assumed 200 prompt + 450 response tokens a side "
             "(the card's AlpacaEval length, ~1,800 characters)", 1, 8, "rmsprop", False, ("zero3",), 16, 1024,
             True, 64, 8, 8, "8 GPUs, ZeRO-3, time not given", frozen_copies=1),
    Workload("sppo_gemma2_9b", "generate", GEMMA2_9B, 60_000, 5 * (200 + 450),
             "3 x 20,000 prompts x K=5 responses, 200 prompt + 450 new tokens each (assumed as above)", 1, 2,
             "", False, ("vllm",), 0, 0, False, 0, 0, 8, "not given"),
)


def states_bytes_per_param(work: Workload, engine: str, gpus: int) -> float:
    """Model-state bytes per parameter on one GPU (see the module doc)."""
    weights, grads, optim = 2.0, (0.0 if work.lora else 2.0), (0.0 if work.lora else OPTIMIZER_BYTES[work.optimizer])
    frozen = 2.0 * work.frozen_copies
    if engine == "ddp":
        return weights + grads + optim + frozen
    if engine == "zero2":
        return weights + (grads + optim) / gpus + frozen
    if engine in ("zero3", "fsdp2"):
        return (weights + grads + optim + frozen) / gpus
    if engine == "zero3_offload":
        return (weights + grads + frozen) / gpus
    raise ValueError(f"unknown engine {engine!r}")


def activation_bytes(work: Workload, micro_batch_rows: int | None = None) -> float:
    sequences = work.sequences_per_micro_batch * (micro_batch_rows or work.micro_batch_rows) // work.micro_batch_rows
    tokens = sequences * work.seq_len
    model = work.model
    per_layer = 34 * tokens * model.hidden
    kept = model.layers * tokens * model.hidden * 2 + per_layer if work.checkpointing else model.layers * per_layer
    return kept + tokens * model.vocab * 6


def memory_gb(work: Workload, engine: str, gpus: int, micro_batch_rows: int | None = None) -> tuple[float, float]:
    """(model states, activations) in GB per GPU; generation: the weights, vLLM gives the rest to the KV cache."""
    if work.stage == "generate":
        return 2 * work.model.total / 1e9, 0.0
    return (states_bytes_per_param(work, engine, gpus) * work.model.total / 1e9,
            activation_bytes(work, micro_batch_rows) / 1e9)


def hours(work: Workload, scale: float, gpus: int, peak_tflops: float, mfu: float) -> float:
    return work.tokens(scale) * work.flops_factor * work.model.n / (gpus * peak_tflops * 1e12 * mfu) / 3600


def project(work: Workload, scale: float, gpu: str = "H100 SXM", gpu_memory_gb: float = 80.0,
            mfu: float = DEFAULT_MFU, generation_mfu: float = DEFAULT_GENERATION_MFU,
            target_hours: float = DEFAULT_TARGET_HOURS) -> dict[str, Any]:
    """One row: the card's GPU count at its scale; above it, that count doubled until the run fits in
    `target_hours`; the first engine of the recipe whose memory fits in 90 % of a GPU, at the card's
    micro-batch or, failing that, the largest halved one (more accumulation, same rows per step)."""
    peak = PEAK_BF16_TFLOPS[gpu]
    rate = generation_mfu if work.stage == "generate" else mfu
    gpus = work.card_gpus
    while scale > 1 and hours(work, scale, gpus, peak, rate) > target_hours and gpus < 4096:
        gpus *= 2
    micro = work.micro_batch_rows
    choices = [(m, e) for m in _halvings(micro) for e in work.engines
               if sum(memory_gb(work, e, gpus, m)) <= FIT * gpu_memory_gb]
    fits = bool(choices)
    micro, engine = choices[0] if fits else (1, work.engines[-1])
    tokens = work.tokens(scale)
    wall = hours(work, scale, gpus, peak, rate)
    states, activations = memory_gb(work, engine, gpus, micro)
    return {
        "recipe": work.recipe, "stage": work.stage, "scale": f"{scale:g}x", "rows": round(work.rows * scale),
        "tokens": tokens, "flops": tokens * work.flops_factor * work.model.n, "gpus": gpus,
        "engine": (f"vLLM x {gpus} replicas" if work.stage == "generate" else
                   engine if engine != "ddp" or gpus > 1 else "one GPU"),
        "micro_batch_rows": micro, "states_gb": states, "activations_gb": activations, "fits": fits, "hours": wall,
        "gpu_hours": wall * gpus,
        "card_batch_kept": work.stage == "generate" or gpus * micro <= work.rows_per_step,
        "arithmetic": (f"{tokens:.3g} x {work.flops_factor:g} x {work.model.n:.4g} / "
                       f"({gpus} x {peak:g}e12 x {rate:g}) = {wall:.3g} h"),
    }


def _halvings(rows: int) -> list[int]:
    out = [rows]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


def projection_table(**settings: Any) -> list[dict[str, Any]]:
    return [project(work, scale, **settings) for work in WORKLOADS for scale in SCALES]


def card_check(work: Workload, seconds: float, gpus: float, peak_tflops: float) -> float:
    """The MFU a card's own wall time implies for the workload's token count."""
    return work.tokens(1) * work.flops_factor * work.model.n / (seconds * gpus * peak_tflops * 1e12)


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ["recipe", "stage", "data", "rows", "tokens", "GPUs", "engine", "micro-batch",
              "GB / GPU (states + activations)",
              "hours", "GPU-hours", "card batch kept", "arithmetic (tokens x F x N / (GPUs x peak x MFU))"]
    body = [[r["recipe"], r["stage"], r["scale"], f"{r['rows']:,}", f"{r['tokens']:.3g}", r["gpus"], r["engine"],
             r["micro_batch_rows"] or "-",
             f"{r['states_gb'] + r['activations_gb']:.0f} ({r['states_gb']:.0f} + {r['activations_gb']:.0f})"
             + ("" if r["fits"] else " does not fit: sequence parallel"), f"{r['hours']:.2f}", f"{r['gpu_hours']:.1f}",
             "yes" if r["card_batch_kept"] else "no", r["arithmetic"]] for r in rows]
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", default="H100 SXM", choices=sorted(PEAK_BF16_TFLOPS))
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="GB per GPU (default %(default)s)")
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="training MFU assumed (default %(default)s)")
    parser.add_argument("--generation-mfu", type=float, default=DEFAULT_GENERATION_MFU,
                        help="generation MFU assumed (default %(default)s)")
    parser.add_argument("--target-hours", type=float, default=DEFAULT_TARGET_HOURS,
                        help="add GPUs (doubling) until a scaled run fits in this (default %(default)s)")
    args = parser.parse_args(argv)
    settings = dict(gpu=args.gpu, gpu_memory_gb=args.gpu_memory, mfu=args.mfu, generation_mfu=args.generation_mfu,
                    target_hours=args.target_hours)
    print(f"PROJECTION on {args.gpu} ({PEAK_BF16_TFLOPS[args.gpu]:g} TFLOP/s dense BF16, {args.gpu_memory:g} GB), "
          f"training MFU {args.mfu:g}, generation MFU {args.generation_mfu:g} (assumed, not measured)\n")
    print(markdown(projection_table(**settings)))
    by_recipe = {w.recipe: w for w in WORKLOADS if w.stage == "train"}
    checks = [("supervisor_stage2", 6 * 3600 + 2 * 60, 0.5, "H200"), ("cs_chatbot_gemma3_4b", 30 * 60, 1, "A100")]
    print("\nMFU implied by the cards' own wall times (same token counts):\n")
    print(markdown_table(["recipe", "card", "implied MFU"], [
        [name, by_recipe[name].card, f"{card_check(by_recipe[name], sec, gpus, PEAK_BF16_TFLOPS[gpu]):.2f}"]
        for name, sec, gpus, gpu in checks]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
