"""Which hub model a checkpoint a run started from is, or stands in for: the base_model a model card names.

A card names its base model by hub id, but a run's base_model is often a local directory:

- a snapshot in the Hugging Face cache (`.../models--OWNER--NAME/snapshots/REVISION`) is OWNER/NAME;
- a directory holding an origin.json says it itself, written by what made it: a model converted from
  a hub model names that model (`{"hub_id": ..., "made": ...}`), a tiny random-init model built for
  tests and the demo stands in for the base_model of the recipe it is trained with
  (`{"stands_in": true, "made": ...}`);
- anything else gives no hub id, and the card says why instead of guessing.

(Merged checkpoints are followed back to their own base by the card, through their manifests.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from recipekit.dataio.atomic import atomic_write_text
from recipekit.paths import REPO_ROOT

ORIGIN_NAME = "origin.json"
# The repository's git-ignored folders, which recipes and the docs' steps name by relative paths
# shaped like hub ids (outputs/supervisor_stage1_merged).
REPO_DATA_FOLDERS = ("outputs", "data", "last_run_prepared")
_HUB_CACHE_SNAPSHOT = re.compile(r"(?:^|/)models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


@dataclass(frozen=True)
class BaseModel:
    hub_id: str | None
    note: str  # how the hub id was found, or why there is none


def write_origin(directory: str | Path, made: str, hub_id: str | None = None) -> None:
    """Record in DIRECTORY how its model was made: converted from HUB_ID, or (no HUB_ID) a stand-in."""
    record = {"hub_id": hub_id} if hub_id else {"stands_in": True}
    atomic_write_text(Path(directory) / ORIGIN_NAME, json.dumps({**record, "made": made}, indent=2) + "\n")


def is_hub_id(ref: Any) -> bool:
    """True for a string shaped like a hub repo id that is not a local path here or in the repository."""
    if not ref:
        return False
    path = Path(str(ref))
    if path.exists() or (REPO_ROOT / path).exists() or path.parts[0] in REPO_DATA_FOLDERS:
        return False
    try:
        validate_repo_id(str(ref))
    except HFValidationError:
        return False
    return True


def _read_origin(directory: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / ORIGIN_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def base_model(ref: Any, recipe: str | None = None, recipe_base: Any = None) -> BaseModel:
    """The hub id of REF, the base_model a run started from; RECIPE_BASE is the base_model of the recipe
    RECIPE that the run's configuration came from, which a stand-in takes the place of."""
    if not ref:
        return BaseModel(None, "no run names its base model")
    if is_hub_id(ref):
        return BaseModel(str(ref), "the base_model of the first run")
    name = Path(str(ref)).name
    if match := _HUB_CACHE_SNAPSHOT.search(Path(str(ref)).as_posix()):
        return BaseModel(f"{match.group(1)}/{match.group(2)}", "read from its Hugging Face cache directory")
    origin = _read_origin(Path(str(ref)))
    if origin is None:
        return BaseModel(None, f"the first run's base model, the local directory `{name}`, is not in the Hugging Face "
                               f"cache and holds no {ORIGIN_NAME} naming the hub model it came from")
    made = origin.get("made") or "made locally"
    if origin.get("hub_id"):
        return BaseModel(str(origin["hub_id"]), f"the local checkpoint `{name}` was {made}")
    if not recipe:
        return BaseModel(None, f"the first run's base model `{name}` is a stand-in ({made}), and no training run's "
                               "recipe names the model it stands for")
    if not is_hub_id(recipe_base):
        return BaseModel(None, f"the first run's base model `{name}` is a stand-in ({made}) for the base_model of "
                               f"`{recipe}`, which is no hub id")
    return BaseModel(str(recipe_base), f"the base_model of `{recipe}`; the run itself trained a stand-in, {made}")
