"""What every preprocessor shares: arguments, the row loop, rejects, atomic output, summary.

A preprocessor supplies `convert(row) -> record | Drop`, raising FieldError on a bad
row. `stream` turns that into located RowErrors: the run stops at the first one, or,
with --skip-invalid, counts it and keeps it for --rejects. Rows stream from the input to
the output, so memory does not grow with the input: a step that needs every row (a
split, oversampling, parts) keeps the records in a `Spool` on disk and only their
indices and keys in memory. Every file is written to a temporary name and renamed, so a
failed run leaves no output behind.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import pickle
import tempfile
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from recipekit.dataio.jsonl import write_jsonl
from recipekit.dataio.rows import FieldError, PrepError, RowError, read_rows

CHUNK_ROWS = 1024  # rows converted, clipped or counted per batched tokenizer call


class Spool:
    """Records kept in an unnamed temporary file, read back in any order by index.

    A list's interface (append, extend, len, iteration) at a few bytes of memory per record.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._offsets = array("q", [0])
        self._position = 0  # of the file, kept here to seek only when a read or write moved it

    def append(self, record: Any) -> None:
        if self._position != self._offsets[-1]:
            self._file.seek(self._offsets[-1])
        data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        self._offsets.append(self._offsets[-1] + len(data))
        self._position = self._offsets[-1]

    def extend(self, records: Iterable[Any]) -> None:
        for record in records:
            self.append(record)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[Any]:
        return self.take(range(len(self)))

    def take(self, indices: Iterable[int]) -> Iterator[Any]:
        """The records at `indices`, in that order (a sequential run reads without seeking)."""
        for index in indices:
            start, end = self._offsets[index], self._offsets[index + 1]
            if self._position != start:
                self._file.seek(start)
            data = self._file.read(end - start)
            self._position = end
            yield pickle.loads(data)


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
    rejects: Spool = field(default_factory=Spool)


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


def chunks(items: Iterable[Any], size: int = CHUNK_ROWS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


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
    """Every record of `stream`, in a list: for inputs known to be small."""
    return list(stream(inputs, convert, stats, skip_invalid))


def stream(inputs: Iterable[str], convert: Callable[[dict], Any], stats: Stats, skip_invalid: bool,
           finalize: Callable[[list[Any]], list[Any]] | None = None, workers: int | None = None) -> Iterator[Any]:
    """Convert every row of every input, lazily; bad rows raise RowError or, when skipped, become rejects."""
    return (record for _, _, record in stream_located(inputs, convert, stats, skip_invalid, finalize, workers))


def stream_located(inputs: Iterable[str], convert: Callable[[dict], Any], stats: Stats, skip_invalid: bool,
                   finalize: Callable[[list[Any]], list[Any]] | None = None,
                   workers: int | None = None) -> Iterator[tuple[str, int, Any]]:
    """`stream`, each record as (file, line, record), so a later check can name its row in a reject.

    `finalize` takes a chunk's converted records and returns, for each, the final record or a
    FieldError: a step that is cheaper in batches (tokenizing). It runs in `workers` forked
    processes (default: one per usable core; 0: in this process). Rows still fail in input order.
    """
    inputs, kept = list(inputs), 0
    for source, results in _converted_chunks(inputs, convert, stats, finalize, workers):
        for line, row, result in results:
            if isinstance(result, RowError):
                reject(result, stats, skip_invalid)
            elif isinstance(result, Drop):
                stats.dropped[result.reason] += 1
            else:
                kept += 1
                yield source, line, result
    if stats.rows_in == 0:
        raise PrepError(f"{', '.join(map(str, inputs))}: input has no rows")
    if not kept:
        raise PrepError(f"no usable rows: {stats.rejected} rejected, {sum(stats.dropped.values())} dropped")


def _converted_chunks(inputs: list[str], convert: Callable[[dict], Any], stats: Stats,
                      finalize: Callable[[list[Any]], list[Any]] | None,
                      workers: int | None) -> Iterator[tuple[str, list]]:
    """(source, [(line, row, record or RowError or Drop)]) of each chunk, in input order.

    With `workers`, `finalize` runs in forked processes a few chunks ahead of the reading and
    converting here: the step is Python (rendering) as much as tokenizing, so threads would
    queue on the interpreter lock. Only the records travel; the raw rows stay here.
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0))
    pool = _FinalizerPool(finalize, workers) if finalize is not None and workers > 0 else None
    try:
        for source in inputs:
            for chunk in chunks(read_objects(source, stats)):
                results = [(line, row, row if isinstance(row, RowError) else _convert(convert, row, str(source), line))
                           for line, row in chunk]
                if pool is not None:
                    yield from pool.submit(str(source), results)
                elif finalize is not None:
                    usable = _usable(results)
                    yield str(source), _with_finals(str(source), results, usable, finalize([results[i][2] for i in usable]))
                else:
                    yield str(source), results
        if pool is not None:
            yield from pool.drain()
    finally:
        if pool is not None:
            pool.close()


def _usable(results: list[tuple[int, Any, Any]]) -> list[int]:
    """Indices of the chunk's converted records (not its RowErrors or Drops)."""
    return [i for i, (_, _, result) in enumerate(results) if not isinstance(result, (RowError, Drop))]


def _with_finals(source: str, results: list[tuple[int, Any, Any]], usable: list[int], finals: list[Any]) -> list:
    """`results` with each usable record replaced by its final record, or by its located RowError."""
    for i, final in zip(usable, finals, strict=True):
        line, row, _ = results[i]
        if isinstance(final, FieldError):
            final = RowError(source, line, final.field, final.reason, raw=row)
        results[i] = (line, row, final)
    return results


class _FinalizerPool:
    """Processes forked from this one running `finalize` on chunks; chunks come back in the order they went.

    Every process is forked at once, before the reading starts a thread here (a progress
    bar's), and each tokenizes on one thread: the pool, not the tokenizer, spreads over the cores.
    """

    def __init__(self, finalize: Callable[[list[Any]], list[Any]], workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.ahead = 2 * workers  # chunks in flight: every process busy, few chunks in memory
        self.pending: deque = deque()
        # What this process holds now (the imported tokenizer stack) leaves the collector's reach
        # until close(): no collection here or in a worker walks it, so no worker copies its pages
        # (5 s of 57 at 200,000 supervisor rows on 2 cores). A caller that froze objects itself
        # keeps them frozen: close() only undoes a freeze this pool made.
        self.unfreeze = gc.get_freeze_count() == 0
        gc.freeze()
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                        initializer=_start_finalizer, initargs=(finalize,))
        self.pool.submit(int).result()  # a fork pool starts all its processes at the first task

    def submit(self, source: str, results: list[tuple[int, Any, Any]]) -> Iterator[tuple[str, list]]:
        """Send a chunk out; yield the chunks that must come back to keep `ahead` in flight."""
        usable = _usable(results)
        self.pending.append((source, results, usable, self.pool.submit(_finalize_here, [results[i][2] for i in usable])))
        while len(self.pending) > self.ahead:
            yield self._next()

    def drain(self) -> Iterator[tuple[str, list]]:
        while self.pending:
            yield self._next()

    def _next(self) -> tuple[str, list]:
        source, results, usable, future = self.pending.popleft()
        return source, _with_finals(source, results, usable, future.result())

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        if self.unfreeze:
            gc.unfreeze()


_FINALIZE: Callable[[list[Any]], list[Any]] | None = None  # in a pool's process: the `finalize` it runs


def _start_finalizer(finalize: Callable[[list[Any]], list[Any]]) -> None:
    global _FINALIZE
    _FINALIZE = finalize
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process; the pool has one per core


def _finalize_here(records: list[Any]) -> list[Any]:
    return _FINALIZE(records)


def _convert(convert: Callable[[dict], Any], row: dict, source: str, line: int) -> Any:
    """The record, a Drop, or the located RowError (returned, so the chunk's earlier rows go first)."""
    try:
        return convert(row)
    except FieldError as err:
        return RowError(source, line, err.field, err.reason, raw=row)


def dedupe(records: Iterable[Any], key: Callable[[Any], Any], stats: Stats) -> Iterator[Any]:
    """Keep the first of each group of records with equal `key`; count the rest as duplicates.

    Only a 16-byte digest of each key is held, not the key itself.
    """
    seen = set()
    for record in records:
        digest = hashlib.blake2b(repr(key(record)).encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            stats.duplicates += 1
        else:
            seen.add(digest)
            yield record


def finish(args: argparse.Namespace, stats: Stats, outputs: dict[Path, Iterable[dict[str, Any]]],
           length_messages: Callable[[dict], list[dict[str, str]]] | None = None,
           token_lengths: Sequence[int] | None = None) -> int:
    """Write every output (and the rejects), then print the summary. Returns the exit status.

    With --tokenizer the summary gives token-length percentiles of the rows written:
    `token_lengths` when the preprocessor counted them already (in output order), else
    counted here from `length_messages` in batches while writing.
    """
    counter = None
    if args.tokenizer and length_messages is not None and token_lengths is None:
        from recipekit.checkpoints.load import load_tokenizer

        counter = _LengthTap(load_tokenizer(args.tokenizer), length_messages)
    counts: dict[Path, int] = {}
    for path, records in outputs.items():
        write_jsonl(path, _counted(counter.tap(records) if counter else records, counts, path))
    if args.rejects is not None:
        write_jsonl(args.rejects, stats.rejects)
    stats.rows_out = sum(counts.values())
    lengths = counter.lengths if counter else token_lengths
    print(summary(stats, counts, lengths if args.tokenizer and length_messages is not None else None))
    return 0


def _counted(records: Iterable[Any], counts: dict[Path, int], path: Path) -> Iterator[Any]:
    counts[path] = 0
    for record in records:
        counts[path] += 1
        yield record


class _LengthTap:
    """Counts the tokens of records on their way to the output, a batch at a time."""

    def __init__(self, tokenizer, length_messages: Callable[[dict], list[dict[str, str]]]):
        self.tokenizer, self.length_messages, self.lengths = tokenizer, length_messages, array("q")

    def tap(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        from recipekit.templates.lengths import token_lengths

        for chunk in chunks(records):
            self.lengths.extend(token_lengths(self.tokenizer, [self.length_messages(r) for r in chunk]))
            yield from chunk


def summary(stats: Stats, counts: dict[Path, int], lengths: Sequence[int] | None) -> str:
    lines = [
        f"rows in: {stats.rows_in}",
        f"rows out: {stats.rows_out} ({', '.join(f'{p}: {n}' for p, n in counts.items())})",
        f"clipped: {stats.clipped}",
        f"rejected: {stats.rejected}",
        f"duplicates: {stats.duplicates}",
    ]
    for reason, count in sorted(stats.dropped.items()):
        lines.append(f"dropped ({reason}): {count}")
    if lengths is not None:
        from recipekit.templates.lengths import percentiles

        lines.append("tokens: " + ", ".join(f"{name} {value}" for name, value in percentiles(lengths).items()))
    return "\n".join(lines)
