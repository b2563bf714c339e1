"""Load recipes, layer overrides on top, and validate them with Axolotl's own schema.

A recipe file is never edited to run somewhere else: the CPU switches, tiny models and
fixture data of the tests, and each SPPO iteration's paths are all overrides applied
to a copy of the loaded YAML.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recipekit.dataio.atomic import atomic_write_text
from recipekit.errors import RecipekitError
from recipekit.paths import REPO_ROOT

# Overrides use this value to remove a key, so Axolotl applies its own default.
DELETE = object()

class RecipeError(RecipekitError, ValueError):
    """A recipe file that cannot be loaded or does not validate."""


# First line of a run configuration's header; names the recipe the overrides were layered on.
RUN_CONFIG_NOTE = "# Run configuration: {source} with overrides; the recipe's header follows."
_RUN_CONFIG_SOURCE = re.compile(r"^Run configuration: (.+) with overrides;")
# "Reproduces ... the model card OWNER/NAME (https://huggingface.co/OWNER/NAME)" in the first paragraph
_MODEL_CARD = re.compile(r"model card (\S+) \((https://\S+)\)")


@dataclass
class RecipeHeader:
    """What a recipe's opening comment says: what it does, the public model card it reproduces,
    and its deviations from that card."""

    description: str
    deviations: list[str]
    source: str | None = None  # for a run configuration: the recipe it was written from
    card_name: str | None = None  # e.g. "cyberagent/ca-reward-3b-ja"
    card_url: str | None = None  # the card's page, e.g. "https://huggingface.co/cyberagent/ca-reward-3b-ja"


def header_comment(path: str | Path) -> list[str]:
    """The recipe's opening comment block, verbatim (every line up to the first that is not a comment)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def read_header(path: str | Path) -> RecipeHeader:
    """Parse the header: the first paragraph up to "Reproduces", the model card it names (name and link),
    and the "Deviations from the card:" bullets."""
    lines = [line[1:].removeprefix(" ") for line in header_comment(path)]
    source = None
    if lines and (match := _RUN_CONFIG_SOURCE.match(lines[0])):
        source = match.group(1)
        lines = lines[2:] if len(lines) > 1 and not lines[1].strip() else lines[1:]
    first = []
    for line in lines:
        if not line.strip():
            break
        first.append(line.strip())
    description = " ".join(first).split("Reproduces ")[0].strip()
    card = _MODEL_CARD.search(" ".join(first))
    deviations: list[str] = []
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("deviations from the card")), None)
    for line in lines[start + 1:] if start is not None else []:
        if not line.startswith(" ") or not line.strip():
            break
        if line.strip().startswith("- "):
            deviations.append(line.strip()[2:])
        elif deviations:
            deviations[-1] += " " + line.strip()
    card_name, card_url = card.groups() if card else (None, None)
    return RecipeHeader(description, deviations, source, card_name, card_url)


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(data).__name__}")
    return data


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `config` with top-level `overrides` applied (DELETE removes a key)."""
    merged = copy.deepcopy(config)
    for key, value in overrides.items():
        if value is DELETE:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate(config: dict[str, Any], source: str | Path = "<config>") -> dict[str, Any]:
    """Run Axolotl's own schema validation; raise RecipeError naming `source` on failure."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        return dict(validate_config(DictDefault(copy.deepcopy(config))))
    except Exception as err:  # pydantic ValidationError and Axolotl's own ValueErrors
        raise RecipeError(f"{source}: Axolotl rejected the config: {err}") from err


def dump_config(config: dict[str, Any], path: str | Path, source: str | Path | None = None) -> Path:
    """Write `config` as YAML; with `source`, under that recipe's header, so the run still documents itself."""
    path = Path(path)
    header = ""
    if source is not None:
        named = Path(source).resolve()
        named = named.relative_to(REPO_ROOT) if named.is_relative_to(REPO_ROOT) else source
        header = "\n".join([RUN_CONFIG_NOTE.format(source=named), "#", *header_comment(source)]) + "\n\n"
    atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
