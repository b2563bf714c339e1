"""predictions.jsonl: one finished row per line, appended as it completes, so runs resume.

A scorer that is interrupted loses at most the row in flight: every row is written with
one write call and flushed to disk. Reading validates every line and names the file and
line of the first bad one, and never rewrites the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from recipekit.jsonl import iter_json_objects


class PredictionsError(ValueError):
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


class PredictionStore:
    """Append-only predictions file; `done` holds the ids already written."""

    def __init__(self, path: str | Path, required: Iterable[str] = ("id",)):
        self.path = Path(path)
        self.required = tuple(required)
        self.done: set[str] = set()
        if self.path.exists():
            self.done = {str(r["id"]) for r in read_predictions(self.path, self.required)}

    def append(self, row: dict[str, Any]) -> None:
        missing = [f for f in self.required if f not in row]
        if missing:
            raise PredictionsError(f"refusing to write a row without {missing}")
        line = json.dumps(row, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(str(row["id"]))
