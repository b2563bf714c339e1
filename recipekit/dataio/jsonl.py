"""Reading JSONL files of objects, with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def iter_json_objects(path: str | Path, error: type[Exception], hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise `error` at the first bad line."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{line_no}: not valid JSON ({err.msg}){hint}") from err
            if not isinstance(value, dict):
                raise error(f"{path}:{line_no}: expected a JSON object, got {type(value).__name__}{hint}")
            yield line_no, value
