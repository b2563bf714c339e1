"""Scoring throughput: N prompts x M forced new tokens on the same architecture.

Prompts are random token ids with lengths from a documented distribution; generation is
greedy with `min_new_tokens = max_new_tokens`, so every row produces exactly M tokens as
the card's scorer does when its <think> block runs long. The one-row-at-a-time loop can
be timed on fewer rows than the set (`loop_rows`); its total is then extrapolated
linearly and marked so.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from tqdm import tqdm

from recipekit.bench.model_build import build_model, missing_requirement
from recipekit.bench.report import runnable


@dataclass(frozen=True)
class GenVariant:
    name: str
    description: str

    def unavailable(self) -> str | None:
        if self.name == "c_vllm":
            return missing_requirement(cuda=True, packages=("vllm",))
        return None


GEN_VARIANTS = (
    GenVariant("a_loop", "card's loop: one row at a time, transformers generate"),
    GenVariant("b_batched_dynamic", "batched transformers generate, dynamic cache"),
    GenVariant("b_batched_static", "batched transformers generate, static cache"),
    GenVariant("c_vllm", "vLLM offline engine, same weights"),
)


def make_prompts(lengths: Sequence[int], vocab_size: int, seed: int) -> list[list[int]]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (int(n),), generator=generator).tolist() for n in lengths]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _generate(model, batch: list[list[int]], new_tokens: int, pad_id: int, device: str, static: bool) -> int:
    """Greedy generation of exactly `new_tokens` per row (left padding); returns tokens produced."""
    import torch

    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(batch):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    extra = {"cache_implementation": "static"} if static else {}
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad_id, **extra)
    produced = out.shape[1] - width
    if produced != new_tokens:
        raise RuntimeError(f"generate produced {produced} tokens per row, expected {new_tokens}")
    return produced * len(batch)


def _time_transformers(model, prompts, *, new_tokens, pad_id, device, batch_size, static, desc) -> tuple[int, float]:
    ordered = sorted(prompts, key=len, reverse=True)  # similar lengths share a batch: less padding
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    _sync(device)
    started = time.perf_counter()
    tokens = sum(_generate(model, b, new_tokens, pad_id, device, static) for b in tqdm(batches, desc=desc, leave=False))
    _sync(device)
    return tokens, time.perf_counter() - started


def _time_vllm(folder: str, prompts, *, new_tokens, seed) -> tuple[int, float]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    engine = LLM(model=folder, skip_tokenizer_init=True, dtype="bfloat16", seed=seed)
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True)
    started = time.perf_counter()
    outputs = engine.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
    seconds = time.perf_counter() - started
    return sum(len(o.outputs[0].token_ids) for o in outputs), seconds


def _release(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_generation_suite(config: Any, prompt_lengths: Sequence[int], *, new_tokens: int, batch_size: int,
                         loop_rows: int, device: str, dtype, seed: int,
                         variants: Sequence[GenVariant] = GEN_VARIANTS) -> dict[str, Any]:
    """Each variant's tokens/s and total time for the whole prompt set (or skipped with its reason)."""
    rows = len(prompt_lengths)
    prompts = make_prompts(prompt_lengths, config.vocab_size, seed)
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    model = build_model(config, attn_implementation="sdpa", device=device, dtype=dtype, seed=seed).eval()
    results = []
    for variant in runnable(variants, results):
        timed_rows = min(loop_rows, rows) if variant.name == "a_loop" else rows
        if variant.name == "c_vllm":  # last variant: the engine needs the GPU memory the model holds
            with tempfile.TemporaryDirectory(prefix="bench-vllm-") as folder:
                model.save_pretrained(folder)
                model = None
                _release(device)
                tokens, seconds = _time_vllm(folder, prompts, new_tokens=new_tokens, seed=seed)
        else:
            tokens, seconds = _time_transformers(
                model, prompts[:timed_rows], new_tokens=new_tokens, pad_id=pad_id, device=device,
                batch_size=1 if variant.name == "a_loop" else batch_size,
                static=variant.name == "b_batched_static", desc=variant.name)
        total = seconds * rows / timed_rows
        results.append({
            "variant": variant.name, "description": variant.description, "status": "measured",
            "timed_rows": timed_rows, "new_tokens_per_row": new_tokens, "tokens": tokens,
            "seconds": round(seconds, 4), "tokens_per_second": tokens / seconds,
            "total_seconds_all_rows": total, "extrapolated": timed_rows < rows,
            "batch_size": 1 if variant.name == "a_loop" else batch_size,
        })
    model = None
    _release(device)
    loop = next((r for r in results if r["variant"] == "a_loop" and r["status"] == "measured"), None)
    for result in results:
        if loop and result["status"] == "measured":
            result["speedup_vs_loop"] = result["tokens_per_second"] / loop["tokens_per_second"]
    return {"rows": rows, "new_tokens": new_tokens, "variants": results}
