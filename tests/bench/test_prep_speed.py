"""The preprocessor benchmark: seeded inputs, real child runs measured, the report written."""

from __future__ import annotations

import itertools
import json
import os
import sys

from recipekit.bench import prep_speed
from recipekit.bench.cli import main as bench_main


def test_synthetic_rows_are_seeded():
    first = list(itertools.islice(prep_speed.supervisor_rows(50, seed=3), 50))
    assert first == list(prep_speed.supervisor_rows(50, seed=3))
    assert first != list(prep_speed.supervisor_rows(50, seed=4))
    assert len({row["id"] for row in first}) == 50
    assert list(prep_speed.bitext_rows(20, seed=3)) == list(prep_speed.bitext_rows(20, seed=3))


def test_marginal_rate_takes_out_the_start_up():
    results = [{"case": "a", "rows": 1000, "seconds": 12.0}, {"case": "a", "rows": 11000, "seconds": 22.0},
               {"case": "b", "rows": 1000, "seconds": 1.0}]
    prep_speed._add_marginal_rates(results)
    assert results[1]["marginal_rows_per_s"] == 1000
    assert "marginal_rows_per_s" not in results[0] and "marginal_rows_per_s" not in results[2]


def test_prep_suite_runs_each_preprocessor_and_writes_the_report(tmp_path, tiny_model):
    tiny_model("gemma4")  # built once here, not inside the timed child
    out = tmp_path / "prep"
    assert bench_main(["--suite", "prep", "--prep-rows", "500", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    cases = {case["case"]: case for case in report["prep"]["cases"]}
    assert [case.name for case in prep_speed.CASES] == list(cases)
    for case in cases.values():
        assert case["rows"] == case["rows_out"] == 500  # train and test split together
        low, high = case["seconds"] - 0.005, case["seconds"] + 0.005  # seconds are rounded to 0.01
        assert low > 0 and 500 / high - 1 <= case["rows_per_s"] <= 500 / low + 1
        assert 5 < case["peak_rss_mb"] < 4096 and 5 < case["peak_tree_pss_mb"] < 4096
    supervisor, bitext = cases.values()
    assert 0 < supervisor["clipped"] < 500 and bitext["clipped"] == 0
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| prep_bitext (split) | 500 |" in markdown and "peak_rss_mb" in markdown and "peak_tree_pss_mb" in markdown


def test_tree_memory_counts_the_forked_children(tmp_path):
    """A child that forks two others, each making 200 MB of its own: the tree holds over 600 MB, the child alone
    about 200 MB, however large this process is (ru_maxrss would give at least this process's size)."""
    script = ("import os, time\n"
              "pids = []\n"
              "for _ in range(2):\n"
              "    pid = os.fork()\n"
              "    if pid == 0:\n"
              "        data = b'x' * (200 << 20); time.sleep(1.5); os._exit(0)\n"
              "    pids.append(pid)\n"
              "data = b'x' * (200 << 20); time.sleep(1.5)\n"
              "for pid in pids: os.waitpid(pid, 0)\n")
    command = [sys.executable, "-c", script]
    ballast = b"x" * (500 << 20)  # this process is over 500 MB while the child starts
    _, rss, tree = prep_speed.run_child(command, dict(os.environ), tmp_path / "log.txt")
    del ballast
    assert 200 * 2**20 < rss < 400 * 2**20 and tree > 600 * 2**20
