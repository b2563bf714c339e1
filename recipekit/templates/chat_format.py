"""Conversations as the recipes store them, and the prompts that match their training text.

Rows on disk use ShareGPT keys ({"from", "value"}) as the supervisor card does; chat
templates take {"role", "content"}. The inference prompt of a row is cut from the very
text the model was trained on, so the two can never drift apart. This matters for
Gemma 4, whose generation prompt adds an empty thought channel
("<|channel>thought\\n<channel|>") that the training text never contains.
"""

from __future__ import annotations

from typing import Any, Sequence

from recipekit.errors import RecipekitError

ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}
# A marker no real text contains, so its position in a rendering is unambiguous.
_PLACEHOLDER = "\u2063RECIPEKIT_ASSISTANT_REPLY\u2063"


class ConversationError(RecipekitError, ValueError):
    """A conversation that is not a list of well-formed turns."""


def to_messages(conversations: list[dict[str, Any]]) -> list[dict[str, str]]:
    """ShareGPT turns ({"from", "value"}) or chat messages ({"role", "content"}) -> chat messages."""
    if not isinstance(conversations, list) or not conversations:
        raise ConversationError("conversation must be a non-empty list of turns")
    messages = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise ConversationError(f"turn {index} is not an object")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in ROLE_ALIASES:
            raise ConversationError(f"turn {index}: unknown role {role!r}")
        if not isinstance(content, str):
            raise ConversationError(f"turn {index}: content must be a string, got {type(content).__name__}")
        messages.append({"role": ROLE_ALIASES[role], "content": content})
    return messages


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The chat template's text of `messages`; a ConversationError when the template refuses them
    (its raise_exception: Gemma 2 has no system role, Gemma turns must alternate)."""
    from jinja2 import TemplateError

    name = getattr(tokenizer, "name_or_path", "?")
    if not getattr(tokenizer, "chat_template", None):
        raise ConversationError(f"tokenizer {name} has no chat template")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as err:
        raise ConversationError(f"the chat template of {name} refuses the conversation: {err}") from err


def accepts_system_turn(tokenizer) -> bool:
    """Whether the chat template renders a system turn (Gemma 2's refuses one)."""
    try:
        render(tokenizer, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    except ConversationError:
        return False
    return True


def fold_system_turn(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """`messages` with a leading system turn moved to the head of the first user turn, followed by a
    blank line: what Gemma 3's template does itself, for a template with no system role."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, first, *rest = messages
    return [{**first, "content": f"{system['content']}\n\n{first['content']}"}, *rest]


def inference_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The training text of `messages` + an assistant reply, cut where the reply begins.

    `messages` may end with the gold assistant turn (it is replaced) or with the last
    prompt turn. For Gemma 4 this is the rendering without generation prompt followed
    by "<|turn>model\\n".
    """
    prompt_turns = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    text = render(tokenizer, [*prompt_turns, {"role": "assistant", "content": _PLACEHOLDER}])
    cut = text.find(_PLACEHOLDER)
    if cut < 0:
        raise ConversationError("the chat template dropped the assistant reply; cannot build a prompt")
    return text[:cut]


def prompt_token_ids_batch(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The ids a model is fed for chat-template texts, by every generation backend and scorer,
    in one batched tokenizer call.

    The template already wrote BOS where the family wants one, so the tokenizer must add
    no special token of its own (a second BOS changes what Gemma computes).
    """
    return tokenizer(list(texts), add_special_tokens=False).input_ids


def prompt_token_ids(tokenizer, text: str) -> list[int]:
    """`prompt_token_ids_batch` of one text."""
    return prompt_token_ids_batch(tokenizer, [text])[0]
