"""Legacy (instruction, solution) rows for the backfiller, and the prompt of each.

Accepted rows: {"instruction", "solution", "id"?, "conversations"?}: raw legacy rows, or
what `prep_backfill.py --mode inference` writes. A row's prompt is its `conversations`
when present (so a custom --system chosen at prep time is kept), else the user turn
prep_backfill.py builds under the given system prompt. Rows without an id get one from
a hash of their instruction and solution, so a resumed run matches them again whatever
the line numbers; a repeat of the same pair is counted as a duplicate and left out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from recipekit.backfill.prep import DEFAULT_SYSTEM, sentinel_free, user_text
from recipekit.dataio.prep_runner import Stats, read_objects, reject
from recipekit.dataio.rows import FieldError, PrepError, RowError
from recipekit.templates.chat_format import ConversationError, to_messages
from recipekit.templates.shapes import conversation


def _row_id(raw: dict[str, Any], instruction: str, solution: str) -> str:
    if "id" not in raw:
        return hashlib.sha256(f"{instruction}\0{solution}".encode()).hexdigest()[:16]
    if isinstance(raw["id"], bool) or not isinstance(raw["id"], (str, int)) or not str(raw["id"]).strip():
        raise FieldError("id", f"must be a non-empty string or integer, got {raw['id']!r}")
    return str(raw["id"])


def _convert(raw: dict[str, Any], system: str) -> dict[str, Any]:
    instruction, solution = sentinel_free(raw, "instruction"), sentinel_free(raw, "solution")
    turns = raw.get("conversations") or conversation(system, user_text(instruction, solution))
    try:
        messages = to_messages(turns)
    except ConversationError as err:
        raise FieldError("conversations", str(err)) from err
    return {"id": _row_id(raw, instruction, solution), "instruction": instruction, "solution": solution,
            "messages": messages}


def read_backfill_rows(source: str | Path, stats: Stats, skip_invalid: bool = False,
                       system: str = DEFAULT_SYSTEM) -> list[dict[str, Any]]:
    """Rows as {id, instruction, solution, messages}; a bad row raises RowError or, skipped, joins stats.rejects."""
    rows, seen = [], {}
    for line, raw in read_objects(source, stats):
        try:
            if isinstance(raw, RowError):
                raise raw
            try:
                row = _convert(raw, system)
            except FieldError as err:
                raise RowError(str(source), line, err.field, err.reason, raw=raw) from err
            if row["id"] in seen and "id" not in raw:  # the same instruction and solution again
                stats.duplicates += 1
                continue
            if row["id"] in seen:
                raise RowError(str(source), line, "id", f"duplicate id {row['id']!r} (first on line {seen[row['id']]})",
                               raw=raw)
        except RowError as err:
            reject(err, stats, skip_invalid)
            continue
        seen[row["id"]] = line
        rows.append(row)
    if stats.rows_in == 0:
        raise PrepError(f"{source}: input has no rows")
    if not rows:
        raise PrepError(f"{source}: no usable rows ({stats.rejected} invalid)")
    return rows
