"""Whether a model or tokenizer argument names something that can load: a local path, or a hub name.

A path that does not exist would otherwise reach the hub client and end in its traceback
("Repo id must be in the form ..."), or offline in a cache miss deep inside transformers.
Online, a name shaped like a hub repository (`owner/name`) is left to the hub, which may
have it; offline (HF_HUB_OFFLINE=1) only one already in the local hub cache can load.
This module does not import torch or transformers, so a command refuses such an argument
in a moment, before loading anything heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recipekit.errors import RecipekitError


class ModelNotFoundError(RecipekitError):
    """A model or tokenizer argument that is no local path and no hub name that can be reached."""


def resolve_model_path(path: str | Path, label: str = "model") -> str:
    """`path` as a string if it can load; `label` (the option, e.g. --model) starts the error message."""
    name = str(path)
    if Path(name).exists():
        return name
    # huggingface_hub's validators and download code import its HTTP stack: only for a path that is not there.
    from huggingface_hub.constants import is_offline_mode
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelNotFoundError(f"{label} {name}: no such directory") from None
    if is_offline_mode() and not _in_hub_cache(name):
        raise ModelNotFoundError(f"{label} {name}: no such directory, and not a hub model that can be reached "
                                 "offline (HF_HUB_OFFLINE is set and the local hub cache does not have it)")
    return name


def check_model_args(args: argparse.Namespace, *dests: str) -> None:
    """Refuse, up front, each of these options (argparse dests; a repeated option's list too) that cannot load."""
    for dest in dests:
        value = getattr(args, dest, None)
        for path in value if isinstance(value, list) else [value]:
            if path is not None:
                resolve_model_path(path, "--" + dest.replace("_", "-"))


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        return False
    return True
