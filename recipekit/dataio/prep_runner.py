"""What every preprocessor shares: arguments, the row loop, rejects, atomic output, summary.

A preprocessor supplies `convert(row) -> record | Drop`, raising FieldError on a bad
row. `collect` turns that into located RowErrors: the run stops at the first one, or,
with --skip-invalid, counts it and keeps it for --rejects. Nothing is written until every
row has been read, and every file is written to a temporary name and renamed, so a
failed run leaves no output behind.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm

from recipekit.dataio.jsonl import write_jsonl
from recipekit.dataio.rows import FieldError, PrepError, RowError, read_rows


@dataclass(frozen=True)
class Drop:
    """A valid row the preprocessor leaves out on purpose (a tie, a multi-turn row, …)."""

    reason: str


@dataclass
class Stats:
    rows_in: int = 0
    rows_out: int = 0
    clipped: int = 0
    rejected: int = 0
    duplicates: int = 0
    dropped: Counter = field(default_factory=Counter)
    rejects: list[dict[str, Any]] = field(default_factory=list)


def base_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, action="append",
                        help="JSONL, CSV or parquet file, or a hub dataset name (owner/name[:split]); repeatable")
    parser.add_argument("--output", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed rows instead of stopping")
    parser.add_argument("--rejects", type=Path, help="JSONL file receiving each skipped row with its reason")
    parser.add_argument("--tokenizer", help="tokenizer path: enables token-length percentiles in the summary")
    parser.add_argument("--seed", type=int, default=42, help="seed of every shuffle and split")
    return parser


def read_objects(source: str | Path, stats: Stats) -> Iterator[tuple[int, dict | RowError]]:
    """(line, row) for each row of `source`, counted in stats; a row that is no object comes as a RowError."""
    for line, row in tqdm(read_rows(source), desc=f"reading {Path(str(source)).name}", unit=" rows",
                          disable=None, leave=False):
        stats.rows_in += 1
        if not isinstance(row, (dict, RowError)):
            row = RowError(str(source), line, "<row>", f"must be an object, got {type(row).__name__}", raw=row)
        yield line, row


def reject(err: RowError, stats: Stats, skip_invalid: bool) -> None:
    """Stop on a bad row, or with --skip-invalid count it and keep it for the rejects file."""
    if not skip_invalid:
        raise err
    stats.rejected += 1
    stats.rejects.append(err.as_reject())


def collect(inputs: Iterable[str], convert: Callable[[dict], Any], stats: Stats, skip_invalid: bool) -> list[Any]:
    """Convert every row of every input; bad rows raise RowError or, when skipped, become rejects."""
    return [record for _, _, record in collect_located(inputs, convert, stats, skip_invalid)]


def collect_located(inputs: Iterable[str], convert: Callable[[dict], Any], stats: Stats,
                    skip_invalid: bool) -> list[tuple[str, int, Any]]:
    """`collect`, each record as (file, line, record), so a later check can name its row in a reject."""
    records = []
    for source in inputs:
        for line, row in read_objects(source, stats):
            try:
                if isinstance(row, RowError):
                    raise row
                result = _convert(convert, row, str(source), line)
            except RowError as err:
                reject(err, stats, skip_invalid)
                continue
            if isinstance(result, Drop):
                stats.dropped[result.reason] += 1
            else:
                records.append((str(source), line, result))
    if stats.rows_in == 0:
        raise PrepError(f"{', '.join(map(str, inputs))}: input has no rows")
    if not records:
        raise PrepError(f"no usable rows: {stats.rejected} rejected, {sum(stats.dropped.values())} dropped")
    return records


def _convert(convert: Callable[[dict], Any], row: dict, source: str, line: int) -> Any:
    try:
        return convert(row)
    except FieldError as err:
        raise RowError(source, line, err.field, err.reason, raw=row) from err


def dedupe(records: list[Any], key: Callable[[Any], Any], stats: Stats) -> list[Any]:
    """Keep the first of each group of records with equal `key`; count the rest as duplicates."""
    seen, kept = set(), []
    for record in records:
        k = key(record)
        if k in seen:
            stats.duplicates += 1
        else:
            seen.add(k)
            kept.append(record)
    return kept


def finish(args: argparse.Namespace, stats: Stats, outputs: dict[Path, list[dict[str, Any]]],
           length_messages: Callable[[dict], list[dict[str, str]]] | None = None) -> int:
    """Write every output (and the rejects), then print the summary. Returns the exit status."""
    for path, records in outputs.items():
        write_jsonl(path, records)
    if args.rejects is not None:
        write_jsonl(args.rejects, stats.rejects)
    stats.rows_out = sum(len(records) for records in outputs.values())
    print(summary(stats, outputs, args.tokenizer, length_messages))
    return 0


def summary(stats: Stats, outputs: dict[Path, list[dict[str, Any]]], tokenizer_path: str | None,
            length_messages: Callable[[dict], list[dict[str, str]]] | None) -> str:
    lines = [
        f"rows in: {stats.rows_in}",
        f"rows out: {stats.rows_out} ({', '.join(f'{p}: {len(r)}' for p, r in outputs.items())})",
        f"clipped: {stats.clipped}",
        f"rejected: {stats.rejected}",
        f"duplicates: {stats.duplicates}",
    ]
    for reason, count in sorted(stats.dropped.items()):
        lines.append(f"dropped ({reason}): {count}")
    if tokenizer_path and length_messages is not None:
        from recipekit.checkpoints.load import load_tokenizer
        from recipekit.templates.lengths import percentiles, token_length

        tokenizer = load_tokenizer(tokenizer_path)
        lengths = [token_length(tokenizer, length_messages(r)) for rs in outputs.values() for r in rs]
        lines.append("tokens: " + ", ".join(f"{name} {value}" for name, value in percentiles(lengths).items()))
    return "\n".join(lines)

