"""How fast the preprocessors run at real input sizes, and how much memory they hold.

Each case writes N synthetic rows (seeded, so every run reads the same bytes) in the
shape its preprocessor reads, then runs the preprocessor's command line as a child
process and reads its wall time (start-up included), its peak resident memory and the
peak proportional memory of it and the worker processes it forks (both sampled). Cases: `prep_supervisor.py` with --tokenizer clipping (the tiny
Gemma 4's fast tokenizer, a 640-entry byte-level BPE: rows come out longer in tokens than
under a full vocabulary; --max-tokens set so about a fifth of the rows are cut) and a
stratified 1 % test split, and `prep_bitext.py` (a CSV) with a stratified 1 % test split.
The machine's load average is recorded next to every figure.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from recipekit.bench.report import cell
from recipekit.paths import REPO_ROOT
from recipekit.reporting.tables import markdown_table

DEFAULT_ROWS = (20_000, 200_000)
MAX_TOKENS = 458  # the 80th percentile of the synthetic supervisor rows with the tiny Gemma 4 tokenizer

_WORDS = ("냉장고", "세탁기", "보증", "기간", "부품", "수리", "배송", "환불", "교환", "설치", "고객", "문의",
          "order", "refund", "warranty", "the", "a", "is", "please", "check", "manual", "model", "1년", "2년")
_CATEGORIES = ("REF", "A/C", "TV", "WASHER", "OVEN")
_INTENTS = tuple(f"intent_{i:02d}" for i in range(27))  # Bitext has 27 intents


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


def supervisor_rows(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Judged stage-2 rows; the document length is heavy-tailed, as retrieved documents are."""
    rng = random.Random(seed)
    for i in range(n):
        label = rng.choice(("correct", "incorrect"))
        yield {
            "id": f"sv-{i:07d}", "category": rng.choice(_CATEGORIES),
            "transcript": f"고객: {_sentence(rng, 5, 30)}\n챗봇: {_sentence(rng, 5, 30)}",
            "document": _sentence(rng, 5, int(rng.lognormvariate(3.5, 0.8)) + 5),
            "label": label, "reason": _sentence(rng, 4, 12), "think": _sentence(rng, 10, 40),
        }


def bitext_rows(n: int, seed: int) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    for _ in range(n):
        yield {"flags": rng.choice(("B", "BL", "BQZ", "")), "instruction": _sentence(rng, 4, 20),
               "category": "ORDER", "intent": rng.choice(_INTENTS), "response": _sentence(rng, 20, 80)}


def write_jsonl_rows(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv_rows(path: Path, rows: Iterator[dict[str, str]], columns: tuple[str, ...]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Case:
    name: str
    script: str
    make_input: Callable[[Path, int, int], None]  # (path, rows, seed)
    suffix: str
    extra_args: Callable[[Path, int], list[str]]  # (work dir, rows) -> arguments after --input/--output


def _supervisor_input(path: Path, n: int, seed: int) -> None:
    write_jsonl_rows(path, supervisor_rows(n, seed))


def _bitext_input(path: Path, n: int, seed: int) -> None:
    write_csv_rows(path, bitext_rows(n, seed), ("flags", "instruction", "category", "intent", "response"))


def _supervisor_args(work: Path, n: int) -> list[str]:
    from recipekit.testing.tiny_models import tiny_model_path

    return ["--tokenizer", str(tiny_model_path("gemma4")), "--max-tokens", str(MAX_TOKENS),
            "--split-test", str(max(1, n // 100)), "--test-output", str(work / "test.jsonl")]


def _bitext_args(work: Path, n: int) -> list[str]:
    return ["--split-test", str(max(1, n // 100)), "--test-output", str(work / "test.jsonl")]


CASES = (
    Case("prep_supervisor (--tokenizer clipping, split)", "dataset_prep/prep_supervisor.py", _supervisor_input,
         ".jsonl", _supervisor_args),
    Case("prep_bitext (split)", "dataset_prep/prep_bitext.py", _bitext_input, ".csv", _bitext_args),
)


def run_child(command: list[str], env: dict[str, str], log: Path) -> tuple[float, int, int]:
    """(wall seconds, peak resident bytes, peak proportional bytes) of one child process; its output goes to `log`.

    Both peaks are sampled while the child runs. The resident peak is the
    child's own high-water mark (VmHWM; ru_maxrss would not do: Linux carries it over from
    the parent that forked the child, so it is never below this process's own size). The
    proportional peak covers the child and the processes it forks: shared pages counted
    once, split between the processes that share them, so the figure is what the tree holds.
    """
    with log.open("w", encoding="utf-8") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = _MemorySampler(process.pid)
        code = process.wait()
        seconds = time.perf_counter() - start
        sampler.stop()
    if code:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed with {code}:\n{tail}")
    return seconds, sampler.resident_peak, sampler.tree_peak


class _MemorySampler(threading.Thread):
    """A process's resident high-water mark (read every 0.05 s), and the highest proportional
    memory (Pss) of it and its descendants (as often in the first second, for short runs, then
    every 0.5 s: reading Pss walks the page tables, about 5 ms a large process, time the
    measured run would lose)."""

    def __init__(self, pid: int, every: float = 0.05, tree_every: int = 10):
        super().__init__(daemon=True)
        self.pid, self.every, self.tree_every, self.done = pid, every, tree_every, threading.Event()
        self.resident_peak = self.tree_peak = 0
        self.start()

    def run(self) -> None:
        for tick in itertools.count():  # a first sample at once: a short run may end before the first interval
            self.resident_peak = max(self.resident_peak, _status_kb(self.pid, "VmHWM") * 1024)
            if tick < self.tree_every * 2 or tick % self.tree_every == 0:
                self.tree_peak = max(self.tree_peak, sum(_pss(pid) for pid in _tree(self.pid)))
            if self.done.wait(self.every):
                return

    def stop(self) -> None:
        self.done.set()
        self.join()


def _tree(root: int) -> list[int]:
    """`root` and every process below it, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # exited while scanning
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    tree = [root]
    for pid in tree:
        tree.extend(children.get(pid, ()))
    return tree


def _pss(pid: int) -> int:
    return _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss") * 1024


def _status_kb(pid: int, key: str) -> int:
    return _proc_kb(f"/proc/{pid}/status", key)


def _proc_kb(path: str, key: str) -> int:
    """The `KEY: N kB` figure of a /proc file; 0 once the process has exited (or is not ours to read)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return 0
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def _child_env() -> dict[str, str]:
    """This checkout's package first on the path (not another installed copy), offline."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def _summary_count(log: str, name: str) -> int | None:
    match = re.search(rf"^{name}: (\d+)", log, re.M)
    return int(match.group(1)) if match else None


def run_case(case: Case, rows: int, seed: int, work: Path) -> dict[str, Any]:
    source = work / f"{case.script.split('/')[-1].removesuffix('.py')}_{rows}{case.suffix}"
    case.make_input(source, rows, seed)
    command = [sys.executable, str(REPO_ROOT / case.script), "--input", str(source),
               "--output", str(work / "out.jsonl"), "--seed", str(seed), *case.extra_args(work, rows)]
    load_before = os.getloadavg()[0]
    seconds, peak, tree_peak = run_child(command, _child_env(), work / "log.txt")
    log = (work / "log.txt").read_text(encoding="utf-8")
    source.unlink()
    return {"case": case.name, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak / 2**20), "peak_tree_pss_mb": round(tree_peak / 2**20), "rows_out": _summary_count(log, "rows out"),
            "clipped": _summary_count(log, "clipped"), "load_1min_before": round(load_before, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


def prep_suite(rows: tuple[int, ...] = DEFAULT_ROWS, seed: int = 0) -> dict[str, Any]:
    """Every case at every size, in one run; the figures and the machine they came from."""
    results = []
    with tempfile.TemporaryDirectory(prefix="prep_speed.") as work:
        for case in CASES:
            for n in rows:
                results.append(run_case(case, n, seed, Path(work)))
                print(f"{case.name} {n:,} rows: {results[-1]['seconds']} s, {results[-1]['rows_per_s']} rows/s, "
                      f"{results[-1]['peak_rss_mb']} MB", flush=True)
    _add_marginal_rates(results)
    return {"cpus": os.cpu_count(), "max_tokens": MAX_TOKENS, "seed": seed, "cases": results}


def _add_marginal_rates(results: list[dict[str, Any]]) -> None:
    """Rows/s between a case's consecutive sizes: the rate with the fixed start-up cost taken out."""
    for smaller, larger in zip(results, results[1:]):
        if smaller["case"] == larger["case"] and larger["seconds"] > smaller["seconds"]:
            larger["marginal_rows_per_s"] = round((larger["rows"] - smaller["rows"])
                                                  / (larger["seconds"] - smaller["seconds"]))


def prep_markdown(section: dict[str, Any]) -> str:
    columns = ["case", "rows", "seconds", "rows_per_s", "marginal_rows_per_s", "peak_rss_mb", "peak_tree_pss_mb", "clipped",
               "load_1min_before",
               "load_1min_after"]
    note = (f"{section['cpus']} CPU cores; wall time includes start-up (the supervisor's: importing transformers); "
            f"marginal_rows_per_s: rows/s between the two sizes (start-up taken out); peak_rss_mb: the "
            f"child's own resident high-water mark (VmHWM); peak_tree_pss_mb: the highest proportional memory of the child and "
            f"the worker processes it forks together (sampled every 0.5 s; shared pages counted once); load is the "
            f"1-minute load average.")
    return markdown_table(columns, section["cases"], cell) + "\n" + note
