"""The row shapes the recipes' Axolotl datasets read.

SFT rows are ShareGPT conversations, read by `type: chat_template` with
`field_messages: conversations` and `message_property_mappings: {role: from, content: value}`.
Extra top-level keys (id, label, intent, …) are metadata for evaluation; Axolotl drops
every original column after tokenising.
"""

from __future__ import annotations

from typing import Any

from recipekit.templates.chat_format import to_messages


def conversation(system: str | None, user: str, assistant: str | None = None) -> list[dict[str, str]]:
    turns = [{"from": "system", "value": system}] if system else []
    turns.append({"from": "user", "value": user})
    if assistant is not None:
        turns.append({"from": "assistant", "value": assistant})
    return turns


def messages_of(record: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages a record trains on (or is prompted with), for token-length counts."""
    if "conversations" in record:
        return to_messages(record["conversations"])
    system = record.get("system")
    prompt = record.get("input", record.get("prompt"))
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    if "chosen" in record:
        messages.append({"role": "assistant", "content": record["chosen"]})
    return messages
