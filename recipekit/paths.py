"""Where the repository's folders and caches are, resolved once."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = REPO_ROOT / "recipes"
LAUNCH_DIR = RECIPES_DIR / "launch"
CHAT_TEMPLATES_DIR = REPO_ROOT / "chat_templates"


def cache_dir() -> Path:
    """Git-ignored cache for tiny models; RECIPEKIT_CACHE moves it (tests use a temp dir)."""
    return Path(os.environ.get("RECIPEKIT_CACHE", REPO_ROOT / ".cache"))
