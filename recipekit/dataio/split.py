"""Seeded, label-stratified splits (proportional or exact class counts); minority oversampling; disjoint parts."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Callable, Sequence, TypeVar

from recipekit.dataio.rows import PrepError

T = TypeVar("T")


def stratified_split(records: list[T], key: Callable[[T], Any], test_size: int, seed: int) -> tuple[list[T], list[T]]:
    """Hold out `test_size` records with each stratum in proportion (largest remainders).

    Both parts keep the input order, so outputs are stable for a given seed.
    """
    if not 0 < test_size < len(records):
        raise PrepError(f"--split-test {test_size} must be between 1 and {len(records) - 1} (rows available)")
    strata = _strata(records, key)
    exact = {k: len(v) * test_size / len(records) for k, v in strata.items()}
    quota = {k: int(x) for k, x in exact.items()}
    by_remainder = sorted(strata, key=lambda k: (-(exact[k] - quota[k]), str(k)))
    for k in by_remainder[: test_size - sum(quota.values())]:
        quota[k] += 1
    return _hold_out(records, strata, quota, seed)


def class_count_split(records: list[T], key: Callable[[T], Any], counts: dict[Any, int],
                      seed: int) -> tuple[list[T], list[T]]:
    """Hold out exactly counts[k] records of each class k (classes not named: none).

    Draws like stratified_split, so counts equal to its quotas hold out the same rows.
    """
    strata = _strata(records, key)
    for k, wanted in counts.items():
        if wanted > len(strata.get(k, [])):
            raise PrepError(f"--test-counts asks for {wanted} {k!r} rows but the data has {len(strata.get(k, []))}")
    if sum(counts.values()) >= len(records):
        raise PrepError(f"--test-counts holds out {sum(counts.values())} of {len(records)} rows; none left to train on")
    return _hold_out(records, strata, {k: counts.get(k, 0) for k in strata}, seed)


def parse_class_counts(text: str, classes: Sequence[str]) -> dict[str, int]:
    """'correct=52,incorrect=147' -> {'correct': 52, 'incorrect': 147}; ValueError naming the bad part."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        name, sep, number = part.partition("=")
        name = name.strip()
        if not sep or not number.strip().isdigit():
            raise ValueError(f"{part.strip()!r} is not CLASS=COUNT (e.g. correct=52,incorrect=147)")
        if name not in classes:
            raise ValueError(f"unknown class {name!r} (classes: {', '.join(classes)})")
        if name in counts:
            raise ValueError(f"class {name!r} is given twice")
        counts[name] = int(number)
    if not any(counts.values()):
        raise ValueError("every count is 0; nothing to hold out")
    return counts


def _strata(records: list[T], key: Callable[[T], Any]) -> dict[Any, list[int]]:
    strata: dict[Any, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        strata[key(record)].append(index)
    return strata


def _hold_out(records: list[T], strata: dict[Any, list[int]], quota: dict[Any, int],
              seed: int) -> tuple[list[T], list[T]]:
    """(train, test): quota[k] indices drawn from each stratum with one seeded generator, input order kept."""
    rng = random.Random(seed)
    held = set()
    for k in sorted(strata, key=str):
        held.update(rng.sample(strata[k], quota[k]))
    train = [r for i, r in enumerate(records) if i not in held]
    test = [r for i, r in enumerate(records) if i in held]
    return train, test


def oversample(records: list[T], key: Callable[[T], Any], seed: int) -> list[T]:
    """Repeat records of the smaller classes (drawn without bias) until every class is as big as the largest."""
    classes: dict[Any, list[T]] = defaultdict(list)
    for record in records:
        classes[key(record)].append(record)
    target = max(len(v) for v in classes.values())
    rng = random.Random(seed)
    extra = []
    for k in sorted(classes, key=str):
        members = classes[k]
        need = target - len(members)
        whole, rest = divmod(need, len(members))
        extra.extend(members * whole + rng.sample(members, rest))
    combined = records + extra
    rng.shuffle(combined)
    return combined


def disjoint_parts(records: list[T], parts: int, seed: int) -> list[list[T]]:
    """Shuffle once and deal into `parts` contiguous, near-equal, disjoint slices."""
    if not 1 <= parts <= len(records):
        raise PrepError(f"--parts {parts} must be between 1 and {len(records)} (rows available)")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    bounds = [round(i * len(shuffled) / parts) for i in range(parts + 1)]
    return [shuffled[bounds[i]:bounds[i + 1]] for i in range(parts)]
