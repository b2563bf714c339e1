"""Facts a model card states that no file of a run holds: the licence of each base model the recipes
start from, and the language of each recipe's data.

The card's metadata takes them from here; a base model not in the table gets the licence its own
model card gives, when that card is in the local Hugging Face cache, and otherwise none (the card
says why).
"""

from __future__ import annotations

from pathlib import Path

# Hub id prefix of a base model family -> the licence identifier of the hub (the base model's own card).
BASE_LICENSES = {
    "google/gemma-2-": "gemma",  # Gemma 2, 3 and 4: the Gemma Terms of Use
    "google/gemma-3-": "gemma",
    "google/gemma-4-": "gemma",
    "Qwen/Qwen3-": "apache-2.0",
    "HuggingFaceTB/SmolLM2-": "apache-2.0",
    "sbintuitions/sarashina2.2-": "mit",
}
# Recipe file -> the language of the data it trains on (ISO 639-1), as the hub's `language` field lists it.
RECIPE_LANGUAGES = {
    "supervisor_stage1.yml": "ko",  # Korean customer-service (question, answer) pairs
    "supervisor_stage2.yml": "ko",  # Korean supervisor judgements
    "cs_chatbot_gemma3_4b.yml": "en",  # Bitext, English
    "sppo_gemma2_9b.yml": "en",  # UltraFeedback prompts
    "reasoning_backfill_qwen3_4b.yml": "en",
    "reward_ja_3b.yml": "ja",
}


def base_license(hub_id: str) -> tuple[str | None, str]:
    """The licence of the hub model HUB_ID and where it was read, or None and why there is none."""
    lowered = hub_id.lower()
    for prefix, license_id in BASE_LICENSES.items():
        if lowered.startswith(prefix.lower()):
            return license_id, "the base model family's"
    from huggingface_hub import metadata_load, try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "README.md")
    license_id = (metadata_load(cached) or {}).get("license") if isinstance(cached, str) else None
    if license_id:
        return str(license_id), "the base model's own card (local Hugging Face cache)"
    return None, (f"`{hub_id}` is not a base model family with a known licence, and its own card is not in the "
                  "local Hugging Face cache")


def recipe_language(recipe: str) -> str | None:
    """The language of the data of RECIPE (a recipe's path or name), when it is one of the repository's."""
    return RECIPE_LANGUAGES.get(Path(recipe).name)
