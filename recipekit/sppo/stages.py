"""Stage bookkeeping of the self-play loop: a stage is finished only if its marker says so.

Each stage writes its outputs first and its marker last (atomically), so a crash before
the marker leaves the stage unfinished. The marker records the stage's settings and
fingerprints of its inputs and outputs; a stage counts as finished only while all three
still match, so changing a setting, regenerating an upstream file or damaging an output
re-runs that stage and, through the changed fingerprints, every stage after it.

Stages that append to their output as they go (generation, ranking) or resume it from a
checkpoint (training) also record what a partial output was started with: a partial file
or directory made from other inputs or settings is stale and is set aside rather than resumed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from recipekit.dataio.atomic import atomic_write_text
from recipekit.reporting.manifest import file_sha256

MARKER_DIR = ".stages"


def fingerprint(paths: Iterable[str | Path]) -> dict[str, str]:
    """Per path: a file's SHA-256; a directory's file names and sizes (weights are too big to hash
    on every run); anything else (a hub model name) as given."""
    prints: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            prints[str(raw)] = file_sha256(path)
        elif path.is_dir():
            listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
            prints[str(raw)] = "dir:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        else:
            prints[str(raw)] = f"name:{raw}"
    return prints


class StageBook:
    """The markers of one iteration directory."""

    def __init__(self, iter_dir: Path):
        self.dir = iter_dir / MARKER_DIR

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def finished(self, stage: str, params: dict[str, Any], inputs: list[Path | str],
                 outputs: list[Path]) -> dict[str, Any] | None:
        """The stage's stats if it finished with these settings and inputs and its outputs are intact."""
        marker = self._read(self.dir / f"{stage}.json")
        if marker is None or not all(Path(p).exists() for p in outputs):
            return None
        if (marker.get("params") != _plain(params) or marker.get("inputs") != fingerprint(inputs)
                or marker.get("outputs") != fingerprint(outputs)):
            return None
        return marker.get("stats", {})

    def finish(self, stage: str, params: dict[str, Any], inputs: list[Path | str], outputs: list[Path],
               stats: dict[str, Any]) -> dict[str, Any]:
        marker = {"stage": stage, "params": _plain(params), "inputs": fingerprint(inputs),
                  "outputs": fingerprint(outputs), "stats": stats}
        atomic_write_text(self.dir / f"{stage}.json", json.dumps(marker, indent=2, ensure_ascii=False) + "\n")
        return stats

    def started_with(self, stage: str, params: dict[str, Any], inputs: list[Path | str]) -> bool:
        """Whether the stage's partial output was started from these settings and inputs."""
        return self._read(self.dir / f"{stage}.started.json") == _start_key(params, inputs)

    def resume_or_reset(self, stage: str, params: dict[str, Any], inputs: list[Path | str], partial: Path) -> None:
        """Keep `partial` (a file or directory) for resuming only if it was started from the same settings
        and inputs."""
        if partial.exists() and not self.started_with(stage, params, inputs):
            stale = partial.with_name(partial.name + ".stale")
            if stale.is_dir():  # a directory (a training run's output) replaces no older one by itself
                shutil.rmtree(stale)
            partial.replace(stale)
            print(f"{partial}: started from other settings or inputs; moved to {stale.name}, starting over")
        if not partial.exists():
            atomic_write_text(self.dir / f"{stage}.started.json",
                              json.dumps(_start_key(params, inputs), indent=2, ensure_ascii=False) + "\n")


def _start_key(params: dict[str, Any], inputs: list[Path | str]) -> dict[str, Any]:
    return {"params": _plain(params), "inputs": fingerprint(inputs)}


def _plain(value: Any) -> Any:
    """`value` as JSON would read it back (tuples as lists, paths as strings), for comparisons."""
    return json.loads(json.dumps(value, default=str))
