"""Teacher-forced negative log-likelihood of a reference reply under a causal LM.

The model reads exactly the prompt ids the generator conditions on, followed by the
reference reply's tokens; only the reply tokens are scored (no prompt, no end-of-turn).
Rows keep the NLL sum and token count, so any grouping can be aggregated later as
perplexity = exp(sum of NLL / sum of tokens).
"""

from __future__ import annotations

import math
from typing import Iterable

from recipekit.templates.chat_format import prompt_token_ids


def reply_token_ids(tokenizer, prompt: str, reply: str) -> tuple[list[int], list[int]]:
    """(prompt ids, reply ids): the reply's tokens as they follow the prompt.

    Tokenising prompt + reply together keeps the ids the model would see; when a merge
    crosses the boundary (the prompt's ids are then no prefix), the reply is tokenised
    on its own instead.
    """
    prompt_ids = prompt_token_ids(tokenizer, prompt)
    joint = prompt_token_ids(tokenizer, prompt + reply)
    if joint[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, joint[len(prompt_ids):]
    return prompt_ids, prompt_token_ids(tokenizer, reply)


def reference_nll(model, tokenizer, prompt: str, reply: str) -> tuple[float, int]:
    """(sum of NLL in nats, number of scored tokens) of `reply` after `prompt`."""
    import torch

    prompt_ids, reply_ids = reply_token_ids(tokenizer, prompt, reply)
    if not reply_ids:
        return 0.0, 0
    ids = torch.tensor([prompt_ids + reply_ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    # position t predicts token t+1: the reply's tokens are predicted from len(prompt)-1 on
    start = len(prompt_ids) - 1
    scored = logits[start:start + len(reply_ids)].float().log_softmax(dim=-1)
    targets = torch.tensor(reply_ids, device=scored.device)
    return float(-scored.gather(1, targets[:, None]).sum()), len(reply_ids)


def perplexity(nll_sums: Iterable[float], token_counts: Iterable[int]) -> float | None:
    """exp(mean NLL per token) over all rows together; None when no token was scored."""
    total, tokens = sum(nll_sums), sum(token_counts)
    return math.exp(total / tokens) if tokens else None
