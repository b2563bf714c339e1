"""Scoring throughput: N prompts x M forced new tokens, one batching strategy per variant, same rows.

Prompts are random token ids with lengths from a documented distribution; generation is
greedy with `min_new_tokens = max_new_tokens`, so every row produces exactly M tokens as
the card's scorer does when its <think> block runs long (the cost of rows that stop early
inside a batch is not in these figures). Every variant runs the same rows of the same model
in one run: one row at a time, batches in input order, batches grouped by prompt length as
the scorers run them (`recipekit.generation.engine.length_sorted_batches`), and vLLM behind its
OpenAI-compatible server, started from .venv-vllm on the same weights as the scorers start it
(its start-up is reported apart, not timed; every row is a concurrent request). Each
variant's generated ids are compared with the one-row loop's. The loop can be timed on fewer
rows than the set (`loop_rows`); its total is then extrapolated linearly and marked so.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from recipekit.bench.model_build import build_model
from recipekit.bench.report import runnable
from recipekit.generation.engine import length_sorted_batches
from recipekit.generation.vllm_server import (
    EngineOptions,
    LocalServer,
    ParallelRequests,
    ServerError,
    connect,
    vllm_python,
)

# lengths, batch size -> row indices of each generate call
Plan = Callable[[Sequence[int], int], list[list[int]]]


def one_row_at_a_time(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    return [[i] for i in range(len(lengths))]


def input_order_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(range(first, min(first + batch_size, len(lengths)))) for first in range(0, len(lengths), batch_size)]


@dataclass(frozen=True)
class GenVariant:
    name: str
    description: str
    plan: Plan | None = None  # None: the vLLM engine, which batches by itself
    static_cache: bool = False
    refused: str | None = None  # why this model cannot run here, found from its config

    def unavailable(self) -> str | None:
        if self.refused:
            return self.refused
        if self.plan is None:
            try:
                vllm_python()
            except ServerError as err:
                return str(err)
        return None


LOOP = "a_loop"
GEN_VARIANTS = (
    GenVariant(LOOP, "card's loop: one row at a time, transformers generate", one_row_at_a_time),
    GenVariant("b_batched_unsorted", "batches in input order, left padding, dynamic cache", input_order_batches),
    GenVariant("b_batched_sorted", "batches grouped by prompt length (the scorers' default), left padding, "
                                   "dynamic cache", length_sorted_batches),
    GenVariant("b_batched_sorted_static", "as b_batched_sorted, static cache", length_sorted_batches,
               static_cache=True),
    GenVariant("c_vllm", "vLLM's OpenAI-compatible server, same weights, every prompt a concurrent request"),
)


def vllm_refuses(config: Any, device: str) -> str | None:
    """Why vLLM's CPU build cannot serve this model, or None: its attention kernels take no head narrower than 32."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if device == "cpu" and head_dim < 32:
        return f"vLLM's CPU attention kernels take heads of 32 and wider; this model's are {head_dim}"
    return None


def make_prompts(lengths: Sequence[int], vocab_size: int, seed: int) -> list[list[int]]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (int(n),), generator=generator).tolist() for n in lengths]


def padding_fraction(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Share of the prompt positions the forward passes run over that are left padding."""
    positions = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / positions


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _generate(model, batch: list[list[int]], new_tokens: int, pad_id: int, device: str,
              static: bool) -> list[list[int]]:
    """Greedy generation of exactly `new_tokens` per row (left padding); returns each row's new ids."""
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
    return out[:, width:].tolist()


def _time_transformers(model, prompts, batches, *, new_tokens, pad_id, device, static, warm_up, desc):
    """(new ids by row index, seconds) for the rows of `batches`; `warm_up`: after one untimed pass over the
    first batch (first-call set-up is not what the variants differ in)."""
    if warm_up:
        _generate(model, [prompts[i] for i in batches[0]], new_tokens, pad_id, device, static)
    outputs: dict[int, list[int]] = {}
    _sync(device)
    started = time.perf_counter()
    for batch in tqdm(batches, desc=desc, leave=False):
        outputs.update(zip(batch, _generate(model, [prompts[i] for i in batch], new_tokens, pad_id, device, static)))
    _sync(device)
    return outputs, time.perf_counter() - started


def _time_vllm(folder: str, prompts, *, new_tokens, seed, dtype):
    """(new ids by row index, seconds, start-up seconds): random prompt ids, so no tokenizer is loaded."""
    started = time.perf_counter()
    server = LocalServer(folder, Path(folder) / "vllm_server.log",
                         EngineOptions(dtype=str(dtype).removeprefix("torch."), extra_args=("--skip-tokenizer-init",)))
    try:
        startup = time.perf_counter() - started
        outputs: dict[int, list[int]] = {}
        bodies = [{"prompt": p, "max_tokens": new_tokens, "min_tokens": new_tokens, "ignore_eos": True,
                   "temperature": 0.0, "seed": seed, "return_token_ids": True} for p in prompts]
        started = time.perf_counter()
        ParallelRequests(connect([server.url], local=server)).map(
            bodies, lambda i, answer: outputs.__setitem__(i, answer["choices"][0]["token_ids"]), desc="c_vllm")
        return outputs, time.perf_counter() - started, startup
    finally:
        server.close()


def _release(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_generation_suite(config: Any, prompt_lengths: Sequence[int], *, new_tokens: int, batch_size: int,
                         loop_rows: int | None, device: str, dtype, seed: int, repeats: int = 1,
                         variants: Sequence[GenVariant] = GEN_VARIANTS) -> dict[str, Any]:
    """Each variant's tokens/s, total time, padding and agreement with the loop on the same prompt set
    (or skipped with its reason); the loop on its first `loop_rows` rows (None: all). Transformers
    variants are timed `repeats` times, taking turns, and the fastest pass is kept, so a slow spell
    of a shared machine does not land on one variant alone."""
    rows = len(prompt_lengths)
    lengths = [int(n) for n in prompt_lengths]
    prompts = make_prompts(lengths, config.vocab_size, seed)
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    model = build_model(config, attn_implementation="sdpa", device=device, dtype=dtype, seed=seed).eval()
    variants = [replace(v, refused=vllm_refuses(config, device)) if v.plan is None else v for v in variants]
    available = [v for v in variants if not v.unavailable()]
    plans = {}  # variant name -> (batch size, row indices of each generate call)
    for variant in (v for v in available if v.plan):
        size = 1 if variant.name == LOOP else batch_size
        timed_rows = min(loop_rows or rows, rows) if variant.name == LOOP else rows
        plans[variant.name] = (size, variant.plan(lengths[:timed_rows], size))
    runs: dict[str, tuple[dict[int, list[int]], float]] = {}  # variant name -> (new ids by row, fastest seconds)
    for turn in range(repeats):
        for variant in (v for v in available if v.plan):
            outputs, seconds = _time_transformers(
                model, prompts, plans[variant.name][1], new_tokens=new_tokens, pad_id=pad_id, device=device,
                static=variant.static_cache, warm_up=turn == 0, desc=f"{variant.name} {turn + 1}/{repeats}")
            runs[variant.name] = (outputs, min(seconds, runs[variant.name][1]) if variant.name in runs else seconds)
    startups = {}
    for variant in (v for v in available if v.plan is None):  # vLLM, last: it needs the GPU memory the model holds
        with tempfile.TemporaryDirectory(prefix="bench-vllm-") as folder:
            model.save_pretrained(folder)
            model = None
            _release(device)
            outputs, seconds, startups[variant.name] = _time_vllm(folder, prompts, new_tokens=new_tokens, seed=seed,
                                                                  dtype=dtype)
            runs[variant.name] = (outputs, seconds)
    model = None
    _release(device)
    loop_outputs = runs[LOOP][0] if LOOP in runs else None
    results = []
    for variant in runnable(variants, results):  # the others are listed as skipped, with their reason
        outputs, seconds = runs[variant.name]
        size, batches = plans.get(variant.name, (None, None))
        record: dict[str, Any] = {"batch_size": size,
                                  "prompt_padding": padding_fraction(lengths, batches) if batches else None}
        if variant.name in startups:
            record["startup_seconds"] = round(startups[variant.name], 1)
        if variant.name != LOOP and loop_outputs is not None:
            record["same_outputs_as_loop"] = all(outputs[i] == ids for i, ids in loop_outputs.items())
        tokens, timed_rows = sum(map(len, outputs.values())), len(outputs)
        results.append({
            "variant": variant.name, "description": variant.description, "status": "measured",
            "timed_rows": timed_rows, "new_tokens_per_row": new_tokens, "tokens": tokens,
            "seconds": round(seconds, 4), "tokens_per_second": tokens / seconds,
            "total_seconds_all_rows": seconds * rows / timed_rows, "extrapolated": timed_rows < rows, **record,
        })
    loop = next((r for r in results if r["variant"] == LOOP and r["status"] == "measured"), None)
    for result in results:
        if loop and result["status"] == "measured":
            result["speedup_vs_loop"] = result["tokens_per_second"] / loop["tokens_per_second"]
    return {"rows": rows, "new_tokens": new_tokens, "repeats": repeats, "variants": results}
