"""Every test that the README's optimiser x engine table names beside a cell exists."""

from __future__ import annotations

import re

from recipekit.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests" / "training"


def _table() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| recipe setting (recipes) |")
    return readme[start:readme.index("\n## ", start)]


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
