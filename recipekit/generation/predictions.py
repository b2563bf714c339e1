"""predictions.jsonl: one finished row per line, appended as it completes, so runs resume.

A scorer that is interrupted loses at most the row in flight: every row is written with
one write call and flushed to disk. Reading validates every line and names the file and
line of the first bad one, and never rewrites the file. Only the writer, resuming, cuts off
a last line without its newline: a write that a crash cut short.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from recipekit.dataio.jsonl import iter_json_objects, json_line
from recipekit.errors import RecipekitError


class PredictionsError(RecipekitError, ValueError):
    """A predictions file that cannot be read as expected."""


def read_predictions(path: str | Path, required: Iterable[str] = ("id",)) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise PredictionsError(f"{path}: no such predictions file")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line_no, row in iter_json_objects(path, PredictionsError, hint="; fix or delete that line"):
        for field in required:
            if field not in row:
                raise PredictionsError(f"{path}:{line_no}: missing field '{field}'")
        key = str(row["id"])
        if key in seen:
            raise PredictionsError(f"{path}:{line_no}: field 'id': duplicate id {key!r}")
        seen.add(key)
        rows.append(row)
    return rows


def _drop_torn_last_line(path: Path, block: int = 1 << 16) -> None:
    """Cut the file back to its last newline; the row that was being written is generated again."""
    with open(path, "rb+") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(max(end - 1, 0))
        if end == 0 or handle.read(1) == b"\n":
            return
        keep, pos = 0, end
        while pos > 0:  # backwards, one block at a time: the file may be large
            start = max(pos - block, 0)
            handle.seek(start)
            cut = handle.read(pos - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        handle.truncate(keep)
    print(f"{path}: dropped a half-written last line ({end - keep} bytes) left by an interrupted run")


class PredictionStore:
    """Append-only predictions file; `done` holds the ids already written."""

    def __init__(self, path: str | Path, required: Iterable[str] = ("id",)):
        self.path = Path(path)
        self.required = tuple(required)
        self.done: set[str] = set()
        if self.path.exists():
            _drop_torn_last_line(self.path)
            self.done = {str(r["id"]) for r in read_predictions(self.path, self.required)}

    def append(self, row: dict[str, Any]) -> None:
        missing = [f for f in self.required if f not in row]
        if missing:
            raise PredictionsError(f"refusing to write a row without {missing}")
        line = json_line(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(str(row["id"]))
