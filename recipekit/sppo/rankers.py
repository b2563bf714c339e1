"""Rankers: score each prompt's candidate responses, higher is better.

The self-play loop only needs `Ranker.score(prompts, candidates)`, one list of scores per
prompt. Scores are compared only among one prompt's candidates (the pair builder turns
their differences into Bradley-Terry win probabilities), so any scale works.

    reward-model   a sequence-classification checkpoint with one output (e.g. the output of
                   recipes/reward_ja_3b.yml), each (prompt, response) tokenised with the
                   reward model's own chat template exactly as it was trained
    pairrm         PairRM through the llm-blender package, as the paper ranked
    MODULE:NAME    your own: a callable NAME in MODULE, called as NAME(model=..., **options),
                   returning a Ranker
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Sequence

from recipekit.errors import RecipekitError
from recipekit.generation.engine import free_accelerator_memory


class RankerUnavailable(RecipekitError, RuntimeError):
    """The requested ranker cannot run in this environment (missing or incompatible package)."""


class Ranker(ABC):
    name: str = "ranker"

    @abstractmethod
    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        """scores[i][j]: how good candidates[i][j] is as a reply to prompts[i]."""

    def close(self) -> None:
        """Free the model's memory (the training run that follows needs it)."""


def _unflatten(flat: Sequence[float], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
    scores, start = [], 0
    for group in candidates:
        scores.append([float(s) for s in flat[start:start + len(group)]])
        start += len(group)
    return scores


class RewardModelRanker(Ranker):
    """A Bradley-Terry reward model: each response scored on its own, as in recipekit.reward.scoring."""

    def __init__(self, model: str, system: str = "", max_length: int = 4096, batch_size: int = 8, dtype: str = "auto"):
        from recipekit.reward.scoring import load_reward_model

        self.name = f"reward-model:{model}"
        self.system, self.max_length, self.batch_size = system, max_length, batch_size
        self.model, self.tokenizer = load_reward_model(model, dtype)

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        from recipekit.reward.scoring import reward_input_ids, score_sequences

        sequences = [reward_input_ids(self.tokenizer, prompt, response, self.system, self.max_length)
                     for prompt, group in zip(prompts, candidates) for response in group]
        return _unflatten(score_sequences(self.model, sequences, self.batch_size, desc="ranking"), candidates)

    def close(self) -> None:
        del self.model
        free_accelerator_memory()


PAIRRM_HELP = (
    "The released llm-blender (0.0.2) imports names that transformers 5 removed, and this "
    "project needs transformers 5. Either rank in a separate environment with transformers<5 "
    "and llm-blender, writing ITER_DIR/scored.jsonl rows {prompt, responses, scores} yourself, "
    "or rank with a sequence-classification reward model: --ranker reward-model --ranker-model PATH."
)


def import_llm_blender():
    try:
        return importlib.import_module("llm_blender")
    except ModuleNotFoundError as err:
        if err.name not in ("llm_blender", None):  # a dependency of llm-blender is missing
            raise RankerUnavailable(f"the pairrm ranker: llm-blender is installed but needs '{err.name}' ({err}). "
                                    + PAIRRM_HELP) from err
        raise RankerUnavailable("the pairrm ranker needs the llm-blender package, which is not installed. "
                                + PAIRRM_HELP) from err
    except ImportError as err:
        raise RankerUnavailable(f"the pairrm ranker: llm-blender failed to import ({err}). " + PAIRRM_HELP) from err


class PairRMRanker(Ranker):
    """PairRM compares the candidates pairwise; llm-blender sums each one's comparison logits."""

    def __init__(self, model: str = "llm-blender/PairRM", batch_size: int = 8, **_: Any):
        llm_blender = import_llm_blender()
        self.name = f"pairrm:{model}"
        self.batch_size = batch_size
        self.blender = llm_blender.Blender()
        self.blender.loadranker(model)

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        scores = self.blender.rank(list(prompts), [list(c) for c in candidates], return_scores=True,
                                   batch_size=self.batch_size)
        return [[float(s) for s in row] for row in scores]

    def close(self) -> None:
        del self.blender
        free_accelerator_memory()


BUILTIN = {"reward-model": RewardModelRanker, "pairrm": PairRMRanker}


def make_ranker(kind: str, model: str | None, **options: Any) -> Ranker:
    """A built-in ranker by name, or MODULE:NAME called as NAME(model=model, **options)."""
    if kind in BUILTIN:
        if kind == "reward-model" and not model:
            raise RankerUnavailable("--ranker reward-model needs --ranker-model PATH "
                                    "(a sequence-classification checkpoint)")
        return BUILTIN[kind](**({"model": model} if model else {}), **options)
    module_name, _, attr = kind.partition(":")
    if not attr:
        raise RankerUnavailable(f"unknown ranker {kind!r}: use {', '.join(BUILTIN)} or MODULE:NAME")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RankerUnavailable(f"ranker {kind!r}: cannot import {attr} from {module_name} ({err})") from err
    ranker = factory(model=model, **options)
    if not isinstance(ranker, Ranker):
        raise RankerUnavailable(f"ranker {kind!r} returned {type(ranker).__name__}, "
                                "not a recipekit.sppo.rankers.Ranker")
    return ranker

