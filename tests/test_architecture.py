"""The layout's rules: test support stays out of the systems and the shared layer, and the package never reads tests/."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap

from recipekit.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "recipekit"
# the only places allowed to import recipekit.testing (besides tests/)
MAY_USE_TEST_SUPPORT = ("recipekit/testing/", "recipekit/bench/", "recipekit/demo.py")
ENTRY_POINTS = ("dataset_prep", "eval", "merge")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(REPO_ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_tests_the_demo_and_the_bench_import_test_support():
    offenders = []
    for rel, tree in _modules():
        if rel.startswith(MAY_USE_TEST_SUPPORT):
            continue
        offenders += [f"{rel}: {name}" for name in _imports(tree) if name.split(".")[:2] == ["recipekit", "testing"]]
    for folder in ENTRY_POINTS:
        for path in sorted((REPO_ROOT / folder).glob("*.py")):
            names = _imports(ast.parse(path.read_text(encoding="utf-8")))
            offenders += [f"{folder}/{path.name}: {n}" for n in names if n.split(".")[:2] == ["recipekit", "testing"]]
    assert not offenders, "test support imported by the package:\n" + "\n".join(sorted(offenders))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_path_in_the_package_points_under_tests():
    under_tests = re.compile(r"(^|[/\\])tests([/\\]|$)")
    offenders = []
    for rel, tree in _modules():
        docs = _docstrings(tree)
        offenders += [f"{rel}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                      and under_tests.search(node.value)]
    assert not offenders, "\n".join(offenders)


def test_importing_every_module_opens_nothing_under_tests():
    """Static checks miss a path built at run time; an audit hook sees every file the imports open."""
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        opened = []
        tests = {str(REPO_ROOT / "tests")!r}
        sys.addaudithook(lambda event, args: event == "open" and isinstance(args[0], str)
                         and args[0].startswith(tests) and opened.append(args[0]))
        import recipekit
        for info in pkgutil.walk_packages(recipekit.__path__, "recipekit."):
            importlib.import_module(info.name)
        from recipekit.testing.smoke import resolve_fixtures
        from recipekit.paths import RECIPES_DIR
        from recipekit.training.recipe_config import load_recipe
        for recipe in sorted(RECIPES_DIR.glob("*.yml")):
            resolve_fixtures(recipe, load_recipe(recipe))
        print("\\n".join(opened))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""
