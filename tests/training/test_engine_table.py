"""Every test that the optimiser x engine table (docs/gpus.md) names beside a cell exists."""

from __future__ import annotations

import re

from recipekit.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests" / "training"


def _table() -> str:
    page = (REPO_ROOT / "docs" / "gpus.md").read_text(encoding="utf-8")
    start = page.index("| recipe setting (recipes) |")
    end = page.find("\n## ", start)  # the table's section runs to the next heading or the page's end
    return page[start:] if end == -1 else page[start:end]


def test_the_engine_table_names_only_tests_that_exist():
    table = _table()
    named = re.findall(r"`(test_\w+\.py)(?:\[([\w-]+)\])?`", table)
    assert {"test_deepspeed.py", "test_deepspeed_recipes.py"} <= {name for name, _ in named}
    for name, run_id in named:
        source = (TESTS / name).read_text(encoding="utf-8")
        assert not run_id or f'"{run_id}":' in source, f"{name} has no run {run_id}"
    for run_id in re.findall(r"`\[([\w-]+)\]`", table):  # a further run of the file named before it
        assert f'"{run_id}":' in (TESTS / "test_deepspeed_recipes.py").read_text(encoding="utf-8"), run_id
    for function in re.findall(r"`(test_\w+)`", table):
        assert any(f"def {function}(" in path.read_text(encoding="utf-8") for path in TESTS.glob("test_*.py")), function
