"""The card's prompt limit: prompts over 512 tokens take no part in self-play.

TRL's DPO trainer has no prompt limit, so the limit is applied before any response is
sampled: by prep_sppo_prompts.py when the parts are made, and again by the driver, which
also reads prompt files that never went through that step. A prompt is counted as the
policy receives it: rendered with the policy's chat template up to where the reply
begins, and tokenised without added special tokens (the template writes BOS itself).
"""

from __future__ import annotations

from recipekit.templates.chat_format import inference_prompt, prompt_token_ids_batch

DEFAULT_MAX_PROMPT_TOKENS = 512  # the card's max prompt length


def policy_tokenizer(model: str, error: type[Exception]):
    """The tokenizer `model` is prompted with, without its weights; `error` (the caller's own type)
    if it cannot be loaded or has no chat template to render prompts with."""
    from recipekit.checkpoints.load import load_tokenizer, require_chat_template  # imports torch: only when counting

    try:
        tokenizer = load_tokenizer(model)
    except (OSError, ValueError) as err:
        raise error(f"{model}: cannot load its tokenizer ({err})") from err
    require_chat_template(tokenizer, model, error)
    return tokenizer


def chat_prompt(tokenizer, prompt: str) -> str:
    """The text the policy generates from for a user prompt."""
    return inference_prompt(tokenizer, [{"role": "user", "content": prompt}])


def over_limit(tokenizer, prompts: list[str], limit: int) -> dict[int, str]:
    """{index: reason} of the prompts whose chat prompt is longer than `limit` tokens."""
    rendered = [chat_prompt(tokenizer, prompt) for prompt in prompts]
    lengths = [len(ids) for ids in prompt_token_ids_batch(tokenizer, rendered)]
    return {index: f"{length} tokens as the policy's chat prompt, over the limit of {limit}"
            for index, length in enumerate(lengths) if length > limit}
