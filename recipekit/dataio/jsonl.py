"""JSONL files: reading them with errors that name the file and line, writing them atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from recipekit.dataio.atomic import atomic_open


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, value) for each non-blank line; a line that is not JSON yields its
    json.JSONDecodeError as the value (its `doc` is the line), for the caller to raise or keep."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, err


def iter_json_objects(path: str | Path, error: type[Exception], hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise `error` at the first bad line."""
    path = Path(path)
    for line_no, value in iter_json_lines(path):
        if isinstance(value, json.JSONDecodeError):
            raise error(f"{path}:{line_no}: not valid JSON ({value.msg}){hint}") from value
        if not isinstance(value, dict):
            raise error(f"{path}:{line_no}: expected a JSON object, got {type(value).__name__}{hint}")
        yield line_no, value


def json_line(record: Any) -> str:
    """One JSONL line: UTF-8 text as it is, values JSON lacks (dates in rejected rows) as strings."""
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write `records` one a line, to a temporary file renamed onto `path` once all are written."""
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json_line(record))
