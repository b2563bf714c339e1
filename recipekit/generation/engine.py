"""Text generation for the scorers and the self-play loop: transformers or vLLM.

Transformers generation is batched by default (`DEFAULT_BATCH_SIZE` rows, left padding), rows
grouped by prompt token count so a batch wastes little on padding; results come back in input
order and, greedy, equal one-row generation up to numerical noise. vLLM runs behind its
OpenAI-compatible server, in an environment of its own (recipekit/generation/vllm_server.py),
and schedules the rows itself. Both backends are fed the same token ids, made from the rendered
prompt by `prompt_token_ids_batch` (no special tokens added: the template wrote the BOS), and
both cut a reply at its first stop token and decode it here with special tokens kept, so
scorers see exactly what the model wrote. A generator is a context manager: leaving it frees
the model's memory or stops the server it started.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from recipekit.checkpoints.load import default_device, has_tokenizer, load_model, load_tokenizer, require_chat_template
from recipekit.checkpoints.model_path import resolve_model_path
from recipekit.errors import RecipekitError
from recipekit.generation.vllm_server import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_CONCURRENCY,
    EngineOptions,
    LocalServer,
    ParallelRequests,
    ServerError,
    connect,
)
from recipekit.templates.chat_format import prompt_token_ids_batch
from recipekit.templates.special_tokens import END_OF_TURN_TOKENS

# Rows per transformers generate call: enough to keep a GPU busy with a 4-12B model, few enough
# that their KV cache (a few thousand tokens each) fits beside the weights.
DEFAULT_BATCH_SIZE = 16


class ModelLoadError(RecipekitError, ValueError):
    """A checkpoint that cannot serve as a chat model here."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 1200
    do_sample: bool = False  # greedy unless asked
    temperature: float = 1.0
    top_p: float = 1.0
    min_p: float | None = None  # drop tokens below min_p x the top probability
    seed: int = 0


@dataclass(frozen=True)
class Generated:
    text: str
    new_tokens: int
    stopped: bool  # ended on a stop token rather than the token budget


def load_chat_model(model: str | None = None, base: str | None = None, adapters: Sequence[str] = (),
                    dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) from a merged checkpoint, or from a base plus LoRA adapters applied in order."""
    if bool(model) == bool(base):
        raise ModelLoadError("give either --model (a merged checkpoint) or --base with --adapter")
    source = model or base
    adapters = [resolve_model_path(adapter, "adapter") for adapter in adapters]
    tokenizer_source = next((a for a in reversed(adapters) if has_tokenizer(a)), source)
    tokenizer = load_tokenizer(tokenizer_source)
    require_chat_template(tokenizer, tokenizer_source, ModelLoadError)
    lm = load_model(source, dtype, device or default_device())
    if adapters:
        from peft import PeftModel

        if lm.get_input_embeddings().num_embeddings < len(tokenizer):
            lm.resize_token_embeddings(len(tokenizer))
        for adapter in adapters:
            lm = PeftModel.from_pretrained(lm, adapter).merge_and_unload()
    return lm.eval(), tokenizer


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """EOS ids of the generation config, the tokenizer's EOS, and any end-of-turn token it knows."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.extend(configured if isinstance(configured, list) else [configured])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(set(ids))


def free_accelerator_memory() -> None:
    """Return freed GPU memory to the device, so the next model (or the training run) gets it."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cut_at_stop(tokenizer, tokens: Sequence[int], stop_ids: Sequence[int]) -> Generated:
    """A reply up to (not including) its first stop token, decoded with special tokens kept."""
    stops = set(stop_ids)
    cut = next((i for i, t in enumerate(tokens) if t in stops), None)
    kept = list(tokens if cut is None else tokens[:cut])
    return Generated(tokenizer.decode(kept, skip_special_tokens=False), len(kept), cut is not None)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices, `batch_size` at a time, by prompt token count, longest first: rows of similar length
    share a batch, so left padding stays small, and a batch too large for memory fails first, not last."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: equal lengths keep input order
    return [order[first:first + batch_size] for first in range(0, len(order), batch_size)]


class ClosingGenerator:
    """A generator as a context manager: leaving it calls close(), which frees a model or stops a server."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TransformersGenerator(ClosingGenerator):
    def __init__(self, model, tokenizer, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.stop_ids = stop_token_ids(tokenizer, model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _batch(self, ids: list[list[int]], sampling: Sampling) -> list[Generated]:
        import torch

        self.tokenizer.padding_side = "left"
        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.model.device)
        torch.manual_seed(sampling.seed)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.do_sample,
                      eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id)
        if sampling.do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, min_p=sampling.min_p)
        else:  # keep the checkpoint's sampling defaults from leaking into greedy decoding
            kwargs.update(temperature=None, top_p=None, top_k=None, min_p=None)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        return [cut_at_stop(self.tokenizer, row, self.stop_ids) for row in out[:, enc.input_ids.shape[1]:].tolist()]

    def generate(self, prompts: Sequence[str], sampling: Sampling,
                 on_done: Callable[[int, Generated], None] | None = None, desc: str = "generating") -> list[Generated]:
        """Results in the order of `prompts`; `on_done(index, result)` fires as each batch finishes."""
        ids = prompt_token_ids_batch(self.tokenizer, prompts)
        results: list[Generated | None] = [None] * len(prompts)
        tokens, start = 0, time.perf_counter()
        with tqdm(total=len(prompts), desc=desc, unit="row") as bar:
            for chunk in length_sorted_batches([len(row) for row in ids], self.batch_size):
                for index, result in zip(chunk, self._batch([ids[i] for i in chunk], sampling)):
                    results[index] = result
                    tokens += result.new_tokens
                    if on_done:
                        on_done(index, result)
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        return results  # type: ignore[return-value]

    def sample(self, prompts: Sequence[str], sampling: Sampling, n: int,
               on_done: Callable[[int, list[Generated]], None] | None = None,
               desc: str = "generating") -> list[list[Generated]]:
        """`n` replies per prompt, reply j drawn with seed + j, in the order of `prompts`; `on_done(index,
        replies)` fires once every reply of the prompts is in."""
        draws = [self.generate(prompts, replace(sampling, seed=sampling.seed + j), desc=f"{desc}, sample {j + 1}/{n}")
                 for j in range(n)]
        results = [[draw[index] for draw in draws] for index in range(len(prompts))]
        for index, replies in enumerate(results):
            if on_done:
                on_done(index, replies)
        return results

    def engine(self) -> dict[str, Any]:
        import transformers

        return {"name": "transformers", "version": transformers.__version__}

    def close(self) -> None:
        """Drop the model and hand its memory back to the device, so the next model (or training) gets it."""
        self.model = None
        free_accelerator_memory()


class VllmServerGenerator(ClosingGenerator):
    """vLLM behind its OpenAI-compatible server (recipekit/generation/vllm_server.py): one this generator
    starts on `model_path` (stopped by close()), or the running `server_urls`, rows spread over all of them.
    `model_path` gives the tokenizer either way, so prompts are the same token ids as for transformers."""

    def __init__(self, model_path: str, options: EngineOptions = EngineOptions(), server_urls: Sequence[str] = (),
                 log_dir: str | Path = ".", api_key_env: str = DEFAULT_API_KEY_ENV, python: str | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY):
        self.tokenizer = load_tokenizer(model_path)
        require_chat_template(self.tokenizer, model_path, ModelLoadError)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.local = None if server_urls else LocalServer(model_path, Path(log_dir) / "vllm_server.log", options,
                                                          python)
        try:
            self.servers = connect(server_urls or [self.local.url], api_key_env, self.local)
        except BaseException:
            self.close()
            raise
        self.requests = ParallelRequests(self.servers, concurrency)

    def engine(self) -> dict[str, Any]:
        """What the manifest records: the engine, the version the servers report, and how many there were."""
        return {"name": "vllm", "version": self.servers[0].version, "servers": len(self.servers),
                "started_here": self.local is not None}

    def _body(self, ids: list[int], sampling: Sampling, n: int) -> dict[str, Any]:
        return {"prompt": ids, "n": n, "max_tokens": sampling.max_new_tokens, "seed": sampling.seed,
                "temperature": sampling.temperature if sampling.do_sample else 0.0,
                "top_p": sampling.top_p if sampling.do_sample else 1.0,
                "min_p": (sampling.min_p or 0.0) if sampling.do_sample else 0.0,
                "stop_token_ids": self.stop_ids, "skip_special_tokens": False, "return_token_ids": True}

    def _replies(self, ids: list[int], answer: dict[str, Any], n: int) -> list[Generated]:
        choices = sorted(answer["choices"], key=lambda c: c["index"])
        if len(choices) != n:
            raise ServerError(f"asked for {n} replies, the server sent {len(choices)}")
        replies = []
        for choice in choices:
            if choice.get("prompt_token_ids", ids) != ids:
                raise ServerError("the server generated from other prompt ids than those sent (first differences: "
                                  f"{_first_difference(ids, choice['prompt_token_ids'])})")
            replies.append(cut_at_stop(self.tokenizer, choice["token_ids"], self.stop_ids))
        return replies

    def sample(self, prompts: Sequence[str], sampling: Sampling, n: int,
               on_done: Callable[[int, list[Generated]], None] | None = None,
               desc: str = "generating") -> list[list[Generated]]:
        """`n` replies per prompt in one request each (vLLM seeds reply j with seed + j), in the order of
        `prompts`; `on_done(index, replies)` fires as each prompt's replies arrive."""
        ids = prompt_token_ids_batch(self.tokenizer, prompts)
        results: list[list[Generated] | None] = [None] * len(prompts)

        def arrived(index: int, answer: dict[str, Any]) -> None:
            results[index] = self._replies(ids[index], answer, n)
            if on_done:
                on_done(index, results[index])

        self.requests.map([self._body(row, sampling, n) for row in ids], arrived, desc)
        return results  # type: ignore[return-value]

    def generate(self, prompts: Sequence[str], sampling: Sampling,
                 on_done: Callable[[int, Generated], None] | None = None, desc: str = "generating") -> list[Generated]:
        """One reply per prompt, in the order of `prompts`; `on_done(index, result)` fires as each arrives."""
        return [replies[0] for replies in self.sample(
            prompts, sampling, 1, on_done and (lambda index, replies: on_done(index, replies[0])), desc)]

    def close(self) -> None:
        if self.local:
            self.local.close()


def _first_difference(sent: list[int], echoed: list[int]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(sent, echoed)) if a != b), min(len(sent), len(echoed)))
    return f"position {at}: sent {sent[at:at + 3]}, echoed {echoed[at:at + 3]}"


def pending(rows: Iterable[dict], done_ids: set[str]) -> list[dict]:
    """Rows whose id is not yet in the predictions file."""
    return [row for row in rows if str(row["id"]) not in done_ids]
