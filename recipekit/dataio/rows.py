"""Reading raw rows and checking their fields, with errors that name file, line and field.

Every preprocessor reads its input through `read_rows`, which yields (line, row) pairs:
the line number is the physical line of a JSONL file, the CSV line where the record
starts, or the 1-based row index of a JSON list, a parquet file or a hub dataset. A line that cannot be
parsed is yielded as a RowError in place of the row, so the caller decides whether to
stop or skip it and reading can go on past it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from recipekit.dataio.jsonl import iter_json_lines
from recipekit.errors import RecipekitError


class FieldError(RecipekitError, ValueError):
    """A row whose `field` is missing or malformed; the reader adds file and line."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self):  # so it crosses to and from a worker process (pickle would pass only the message)
        return type(self), (self.field, self.reason)


class RowError(RecipekitError, ValueError):
    """A bad row, located: file, line and field."""

    def __init__(self, file: str, line: int, field: str, reason: str, raw: Any = None):
        super().__init__(f"{file}:{line}: field {field!r}: {reason}")
        self.file, self.line, self.field, self.reason, self.raw = file, line, field, reason, raw

    def as_reject(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason, "row": self.raw}


class PrepError(RecipekitError, ValueError):
    """A run that cannot produce output (no such input, empty input, impossible split)."""


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    for number, value in iter_json_lines(path):
        if isinstance(value, json.JSONDecodeError):
            value = RowError(str(path), number, "<json>", f"not valid JSON: {value.msg} at column {value.colno}",
                             raw=value.doc.rstrip("\n"))
        yield number, value


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """A .json file holding one JSON list (AlpacaEval's files), else one object per line."""
    with path.open(encoding="utf-8") as handle:
        is_list = handle.read(4096).lstrip().startswith("[")
    if not is_list:
        return _jsonl_rows(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PrepError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    return _table_rows(items)


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        start = 2  # the header is line 1
        for record in reader:
            if None in record:  # more cells than header columns
                yield start, RowError(str(path), start, "<csv>",
                                      f"{len(record[None])} cell(s) beyond the header columns", raw=record[None])
            else:
                yield start, record
            start = reader.line_num + 1


def _table_rows(table) -> Iterator[tuple[int, Any]]:
    for number, record in enumerate(table, start=1):
        yield number, dict(record) if isinstance(record, dict) else record


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """A record batch at a time, so a large file is never held whole as Python objects."""
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
    return _table_rows(row for batch in batches for row in batch.to_pylist())


def hub_name_split(name: str) -> tuple[str, str]:
    """`owner/name[:split]` -> (dataset name, split); the split is train unless named."""
    dataset_name, _, split = name.partition(":")
    return dataset_name, split or "train"


def source_split(source: str | Path) -> str:
    """The split an input holds: a hub dataset's split, or a local file's name without its extension."""
    path = Path(source)
    return path.stem if path.exists() else hub_name_split(str(source))[1]


def _hub_rows(name: str) -> Iterator[tuple[int, Any]]:
    """`owner/name` or `owner/name:split` from the dataset hub (needs network or a cache)."""
    from datasets import load_dataset

    dataset_name, split = hub_name_split(name)
    try:
        table = load_dataset(dataset_name, split=split)
    except Exception as err:  # offline, unknown name, gated: all mean the same to the user
        raise PrepError(f"{name}: no such local file, and loading it as a hub dataset failed: {err}") from err
    yield from _table_rows(table)


def read_rows(source: str | Path) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs of a local .jsonl/.json/.csv/.parquet file or a hub dataset name."""
    path = Path(source)
    if path.exists():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _jsonl_rows(path)
        if suffix == ".json":
            return _json_rows(path)
        if suffix == ".csv":
            return _csv_rows(path)
        if suffix == ".parquet":
            return _parquet_rows(path)
        raise PrepError(f"{path}: unknown input format {suffix!r}; use .jsonl, .json, .csv or .parquet")
    if "/" in str(source) and not str(source).startswith((".", "/")) and path.suffix == "":
        return _hub_rows(str(source))
    raise PrepError(f"{source}: no such file")


# ---- field checks: each raises FieldError naming the field -------------------------------


def text(row: dict, field: str, *, optional: bool = False) -> str | None:
    """A non-empty string field (a missing optional field or null gives None)."""
    value = row.get(field)
    if value is None:
        if optional:
            return None
        raise FieldError(field, "missing")
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        if optional:
            return None
        raise FieldError(field, "is empty")
    return value


def text_list(row: dict, field: str) -> list[str]:
    """A list of non-empty strings; an item's error names it as field[index]."""
    value = row.get(field)
    if not isinstance(value, list):
        raise FieldError(field, "missing or not a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise FieldError(f"{field}[{index}]", "must be a non-empty string")
    return value


def choice(row: dict, field: str, allowed: tuple[str, ...]) -> str:
    value = text(row, field)
    if value not in allowed:
        raise FieldError(field, f"unknown value {value!r}; expected one of {', '.join(allowed)}")
    return value


def integer(row: dict, field: str, low: int, high: int) -> int:
    value = row.get(field)
    if value is None:
        raise FieldError(field, "missing")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)  # CSV cells are strings
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise FieldError(field, f"{value} is outside {low}..{high}")
    return value


def turns(row: dict, field: str) -> list[dict[str, str]]:
    """A list of {"role", "content"} turns with string content."""
    value = row.get(field)
    if value is None:
        raise FieldError(field, "missing")
    if not isinstance(value, list) or not value:
        raise FieldError(field, "must be a non-empty list of turns")
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise FieldError(f"{field}[{index}]", "must be an object with role and content")
        if not isinstance(turn.get("role"), str) or not turn["role"]:
            raise FieldError(f"{field}[{index}].role", "missing or not a string")
        if not isinstance(turn.get("content"), str):
            raise FieldError(f"{field}[{index}].content", "missing or not a string")
    return value
