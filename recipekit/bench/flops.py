"""Model FLOPs of a training step and model FLOPs utilisation (MFU).

Training FLOPs of one row of length l (the PaLM convention, counted on real tokens only):

    6 * N * l  +  sum over layers of 12 * heads * head_dim * pairs(l, window)

- N: parameters every token multiplies through - all weights except the input embedding
  (a lookup), plus the output projection (vocab x hidden) even when it is tied to it.
  LoRA adapter weights are left out (under 0.2 % here). 6 = 2 (multiply-add) x 3 (forward,
  backward for activations, backward for weights). With frozen base weights a LoRA step
  needs no weight gradient (about 4N) but recomputes the forward under gradient
  checkpointing (about 2N more); the 6N convention is kept so MFU compares across set-ups.
- pairs(l, w): query-key pairs a causal layer scores, sum_{i=1..l} min(i, w) (w = l for
  global layers). Each pair costs 2 x 2 FLOPs (QK^T and AV) per head dimension, x 3 for
  training. Packed rows attend only within themselves, so pairs are summed per row.

MFU = model FLOPs / (seconds x peak dense BF16 FLOP/s of the device).
"""

from __future__ import annotations

from typing import Any, Iterable

# Dense (no structured sparsity) BF16 tensor-core peaks, in TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,  # SXM; the same tensor cores as H100 SXM
    "H100 SXM": 989.4,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "B200": 2250.0,
}


def peak_tflops_for(device_name: str) -> tuple[str, float] | None:
    """The table row matching a CUDA device name (longest match first), or None."""
    name = device_name.upper().replace("NVIDIA ", "")
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        parts = key.upper().split()
        if all(part in name for part in parts):
            return key, PEAK_BF16_TFLOPS[key]
    if "H100" in name:  # "H100 80GB HBM3" is the SXM part
        return "H100 SXM", PEAK_BF16_TFLOPS["H100 SXM"]
    return None


def causal_pairs(length: int, window: int | None = None) -> int:
    """sum_{i=1..length} min(i, window): query-key pairs of one causal row."""
    if window is None or window >= length:
        return length * (length + 1) // 2
    return window * (window + 1) // 2 + (length - window) * window


def attention_layers(config: Any) -> list[tuple[int, int, int | None]]:
    """(heads, head_dim, sliding window or None) for each decoder layer of a transformers config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    global_head_dim = getattr(config, "global_head_dim", None) or head_dim
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    window = getattr(config, "sliding_window", None)
    return [
        (heads, head_dim, window) if kind == "sliding_attention" else (heads, global_head_dim, None)
        for kind in layer_types
    ]


def matmul_params(model: Any) -> int:
    """N: every base weight except the input embedding, plus the output projection."""
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings().weight
    total = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    total -= sum(p.numel() for p in _embedding_tables(model))
    tied = out.data_ptr() == embed.data_ptr()
    return total + (out.numel() if tied else 0)


def _embedding_tables(model: Any) -> list:
    import torch

    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]


def training_flops(lengths: Iterable[int], n_params: int, layers: list[tuple[int, int, int | None]]) -> float:
    """Model FLOPs to train on rows of these lengths once (forward + backward)."""
    total = 0.0
    for length in lengths:
        total += 6.0 * n_params * length
        total += sum(12.0 * h * d * causal_pairs(length, w) for h, d, w in layers)
    return total


def forward_flops_per_token(n_params: int) -> float:
    """2N per generated token (attention over the cache left out; reported as tokens/s, not MFU)."""
    return 2.0 * n_params


def mfu(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    if not peak_tflops or seconds <= 0:
        return None
    return flops / seconds / (peak_tflops * 1e12)
