"""Rankers: score each prompt's candidate responses, higher is better.

The self-play loop only needs `Ranker.score(prompts, candidates)`, one list of scores per
prompt. Scores are compared only among one prompt's candidates (the pair builder turns
their differences into Bradley-Terry win probabilities), so any scale works.

    reward-model   a sequence-classification checkpoint with one output (e.g. the output of
                   recipes/reward_ja_3b.yml), each (prompt, response) tokenised with the
                   reward model's own chat template exactly as it was trained
    pairrm         PairRM through the llm-blender package, as the paper ranked, shown each prompt
                   as the policy's chat template renders it (as uclaml/SPPO scripts/rank.py)
    MODULE:NAME    your own: a callable NAME in MODULE, called as NAME(model=..., **options),
                   returning a Ranker; the SPPO driver's options include `policy`, the
                   checkpoint whose chat prompts the responses answer
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Sequence

from recipekit.errors import RecipekitError
from recipekit.generation.engine import free_accelerator_memory
from recipekit.sppo.prompt_limit import chat_prompt, policy_tokenizer


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

    def __init__(self, model: str, system: str = "", max_length: int = 4096, batch_size: int = 8, dtype: str = "auto",
                 **_: Any):  # `policy` too: the reward model reads the prompt through its own chat template
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


PAIRRM_INSTALL = ("install it as `make` does: pip install -r requirements.txt, then "
                  "pip install --no-deps -r requirements-nodeps.txt (llm-blender without its declared dependencies, "
                  "which would move this project's pins)")


def _bridge_transformers_5() -> None:
    """Put back, before llm-blender is first imported, the two transformers 4 names that
    llm-blender 0.0.2 (its last release) uses and transformers 5 removed; nothing else changes.

    - transformers.utils.hub.TRANSFORMERS_CACHE, the deprecated alias of the hub cache: imported
      by llm_blender.blender at import time, and only loadranker's default download folder.
    - a tokenizer's batch_encode_plus(texts, **options), transformers 4's name for calling the
      tokenizer on a list (transformers 5 kept only the call): PairRM's collator encodes with it.

    Remove once an llm-blender release no longer uses them."""
    import transformers.utils.hub
    from huggingface_hub import constants
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    if not hasattr(transformers.utils.hub, "TRANSFORMERS_CACHE"):
        transformers.utils.hub.TRANSFORMERS_CACHE = constants.HF_HUB_CACHE
    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):
        PreTrainedTokenizerBase.batch_encode_plus = _call_on_batch


def _call_on_batch(tokenizer, texts, **options):
    return tokenizer(texts, **options)


def import_llm_blender():
    _bridge_transformers_5()
    try:
        return importlib.import_module("llm_blender")
    except ModuleNotFoundError as err:
        if err.name not in ("llm_blender", None):  # a dependency of llm-blender is missing
            raise RankerUnavailable(f"the pairrm ranker: llm-blender is installed but needs '{err.name}' ({err}); "
                                    + PAIRRM_INSTALL) from err
        raise RankerUnavailable("the pairrm ranker needs the llm-blender package, which is not installed; "
                                + PAIRRM_INSTALL) from err
    except ImportError as err:
        raise RankerUnavailable(f"the pairrm ranker: llm-blender failed to import ({err})") from err


class PairRMRanker(Ranker):
    """PairRM through llm-blender, as the SPPO paper ranked (uclaml/SPPO scripts/rank.py).

    PairRM reads an instruction and two candidates in one pass and gives one comparison logit;
    `Blender.rank(..., return_scores=True)` compares every ordered pair of a prompt's candidates
    and scores each by its mean logit margin over the others, which scripts/compute_prob.py (and
    recipekit.sppo.pairs) turn into P(i beats j) = 1 / (1 + exp(s_j - s_i)).

    The instruction is the prompt as `policy`'s chat template renders it up to where the reply
    begins, the text the candidates were sampled from, as rank.py passes it; without `policy`
    (judging outputs of other models) it is the prompt alone. rank.py cuts its rendering at the
    first "None", the placeholder reply, so a prompt that itself contains "None" loses its end;
    here the cut is at the reply's own place, which is otherwise the same text.
    """

    def __init__(self, model: str = "llm-blender/PairRM", batch_size: int = 8, policy: str | None = None, **_: Any):
        import torch

        llm_blender = import_llm_blender()
        self.name = f"pairrm:{model}"
        self.batch_size = batch_size
        self.policy_tokenizer = policy_tokenizer(policy, RankerUnavailable) if policy else None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.blender = llm_blender.Blender(llm_blender.BlenderConfig(device=device))
        try:
            self.blender.loadranker(str(model), device=device)
        except (OSError, ValueError) as err:  # llm-blender only logs a failed download, then fails here
            raise RankerUnavailable(f"the pairrm ranker cannot load {model} ({err}): a local PairRM checkpoint "
                                    "or a hub name reachable from here is needed") from err

    def instructions(self, prompts: Sequence[str]) -> list[str]:
        if self.policy_tokenizer is None:
            return list(prompts)
        return [chat_prompt(self.policy_tokenizer, prompt) for prompt in prompts]

    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        scores = self.blender.rank(self.instructions(prompts), [list(c) for c in candidates], return_scores=True,
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

