"""Text generation for the scorers and the self-play loop: transformers or vLLM.

Transformers generation is batched with left padding, prompts sorted by length so a batch
wastes little on padding; vLLM is used when asked for and installed. Both backends are fed
the same token ids, made from the rendered prompt by `prompt_token_ids_batch` (vLLM gets them as
token prompts: given a string it would add a BOS before the one the template wrote). Either
way a row's output is the generated text up to (not including) the first stop token,
special tokens kept, so scorers see exactly what the model wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from recipekit.checkpoints.load import default_device, has_tokenizer, load_model, load_tokenizer, require_chat_template
from recipekit.checkpoints.model_path import resolve_model_path
from recipekit.errors import RecipekitError
from recipekit.gpu_deps import require_gpu_package
from recipekit.templates.chat_format import prompt_token_ids_batch
from recipekit.templates.special_tokens import END_OF_TURN_TOKENS


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


class TransformersGenerator:
    def __init__(self, model, tokenizer, batch_size: int = 8):
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
        results = []
        stops = set(self.stop_ids)
        for row in out[:, enc.input_ids.shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            kept = row if cut is None else row[:cut]
            results.append(Generated(self.tokenizer.decode(kept, skip_special_tokens=False), len(kept), cut is not None))
        return results

    def generate(self, prompts: Sequence[str], sampling: Sampling,
                 on_done: Callable[[int, Generated], None] | None = None, desc: str = "generating") -> list[Generated]:
        """Generate for every prompt; `on_done(index, result)` fires as each batch finishes."""
        ids = prompt_token_ids_batch(self.tokenizer, prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
        results: list[Generated | None] = [None] * len(prompts)
        tokens, start = 0, time.perf_counter()
        with tqdm(total=len(prompts), desc=desc, unit="row") as bar:
            for first in range(0, len(order), self.batch_size):
                chunk = order[first:first + self.batch_size]
                for index, result in zip(chunk, self._batch([ids[i] for i in chunk], sampling)):
                    results[index] = result
                    tokens += result.new_tokens
                    if on_done:
                        on_done(index, result)
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        return results  # type: ignore[return-value]


class VllmGenerator:
    """vLLM offline generation over a merged checkpoint (GPU only)."""

    def __init__(self, model_path: str, dtype: str = "auto", tensor_parallel_size: int = 1, chunk_size: int = 256):
        vllm = require_gpu_package("vllm", "--backend vllm")
        self._vllm = vllm
        self.chunk_size = chunk_size
        self.tokenizer = load_tokenizer(model_path)
        self.llm = vllm.LLM(model=model_path, dtype=dtype, tensor_parallel_size=tensor_parallel_size)
        self.stop_ids = stop_token_ids(self.tokenizer)

    def generate(self, prompts: Sequence[str], sampling: Sampling,
                 on_done: Callable[[int, Generated], None] | None = None, desc: str = "generating") -> list[Generated]:
        params = self._vllm.SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature if sampling.do_sample else 0.0,
            top_p=sampling.top_p if sampling.do_sample else 1.0,
            min_p=(sampling.min_p or 0.0) if sampling.do_sample else 0.0,
            seed=sampling.seed,
            stop_token_ids=self.stop_ids,
            skip_special_tokens=False,
        )
        results = []
        # Chunks, so an interrupted run keeps what the finished chunks produced.
        for first in range(0, len(prompts), self.chunk_size):
            chunk = [{"prompt_token_ids": ids}
                     for ids in prompt_token_ids_batch(self.tokenizer, prompts[first:first + self.chunk_size])]
            outputs = self.llm.generate(chunk, params, use_tqdm=True)
            for offset, out in enumerate(outputs):
                completion = out.outputs[0]
                result = Generated(completion.text, len(completion.token_ids), completion.finish_reason == "stop")
                results.append(result)
                if on_done:
                    on_done(first + offset, result)
        return results


def pending(rows: Iterable[dict], done_ids: set[str]) -> list[dict]:
    """Rows whose id is not yet in the predictions file."""
    return [row for row in rows if str(row["id"]) not in done_ids]
