"""The policy's side of self-play: K sampled responses per prompt, and greedy replies for the win-rate.

Sample k of every prompt is drawn with seed + k, so the K samples differ and a re-run
draws the same ones. Prompts go through in chunks; after each chunk one row per prompt,
with all K responses, is appended to the generations file, so an interrupted run loses
at most one chunk. Prompts are rendered with the policy's chat template, cut exactly
where its training text puts the reply.

Responses are kept without surrounding whitespace: Gemma's template trims message
content, and Axolotl's argilla_chat strategy finds the response inside the rendered
turn by exact match, so an untrimmed response would become an empty training text.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recipekit.dataio import rows as fields
from recipekit.dataio.rows import FieldError, PrepError, RowError, read_rows
from recipekit.errors import RecipekitError
from recipekit.generation.engine import Sampling
from recipekit.generation.eval_runner import open_generator
from recipekit.generation.predictions import PredictionStore
from recipekit.sppo.prompt_limit import chat_prompt

GENERATION_FIELDS = ("id", "prompt", "responses")


class PromptFileError(RecipekitError, ValueError):
    """A prompt part that is missing, empty or malformed."""


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict[str, str]]:
    """Rows {"id": line number, "prompt"} of a prep_sppo_prompts.py part; errors name file, line, field."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: no such prompt file")
    rows = []
    try:
        lines = read_rows(str(path))
    except PrepError as err:
        raise PromptFileError(str(err)) from err
    for line, row in lines:
        if isinstance(row, RowError):
            raise PromptFileError(str(row))
        try:
            if not isinstance(row, dict):
                raise FieldError("<row>", f"must be an object, got {type(row).__name__}")
            rows.append({"id": str(line), "prompt": fields.text(row, "prompt")})
        except FieldError as err:
            raise PromptFileError(f"{path}:{line}: field {err.field!r}: {err.reason}") from err
        if limit is not None and len(rows) == limit:
            break
    if not rows:
        raise PromptFileError(f"{path}: no prompts")
    return rows


def split_holdout(rows: list[dict[str, str]], holdout: int, source: Path | str) -> tuple[list, list]:
    """(training prompts, held-out prompts): the last `holdout` rows judge the new policy and are never trained on."""
    if holdout < 1 or holdout >= len(rows):
        raise PromptFileError(f"{source}: {len(rows)} prompts cannot hold out {holdout} for the win-rate "
                              "and keep at least one to train on; change --holdout or --limit")
    return rows[:-holdout], rows[-holdout:]


def open_policy(model: str, engine: argparse.Namespace, log_dir: str | Path):
    """A generator (with .tokenizer, a context manager) over a checkpoint, as the command's generation options
    say: batched transformers, or a vLLM server started on it (its log in LOG_DIR)."""
    return open_generator(argparse.Namespace(**{**vars(engine), "model": model, "base": None, "adapter": None}),
                          log_dir)


def sample_responses(generator, rows: list[dict[str, str]], store: PredictionStore, sampling: Sampling, k: int,
                     chunk_size: int, desc: str) -> None:
    """Append {"id", "prompt", "responses": [k texts], "stopped": [k flags]} for every row not yet in `store`,
    each row as soon as its K responses are in."""
    todo = [row for row in rows if row["id"] not in store.done]
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    for number, chunk in enumerate(chunks, start=1):
        prompts = [chat_prompt(generator.tokenizer, row["prompt"]) for row in chunk]

        def save(index: int, replies, chunk=chunk) -> None:
            store.append({**chunk[index], "responses": [r.text.strip() for r in replies],
                          "stopped": [r.stopped for r in replies]})

        generator.sample(prompts, sampling, k, on_done=save, desc=f"{desc}, chunk {number}/{len(chunks)}")


def greedy_responses(generator, prompts: list[str], max_new_tokens: int, desc: str) -> list[str]:
    rendered = [chat_prompt(generator.tokenizer, prompt) for prompt in prompts]
    return [g.text.strip() for g in generator.generate(rendered, Sampling(max_new_tokens=max_new_tokens), desc=desc)]


def sampling_settings(args: Any) -> Sampling:
    return Sampling(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                    top_p=args.top_p, seed=args.seed)
