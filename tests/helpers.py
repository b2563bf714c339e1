"""Helpers shared by the test modules: running a command-line script, reading and writing JSONL."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable

from recipekit.cli import exit_status
from recipekit.paths import REPO_ROOT


def run_script(script: str | Path, *args: Any) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS...` from the repository root, offline, its text output captured: run in
    this process (the script as __main__, its exit status from SystemExit), which skips the seconds
    of importing torch and transformers again in a child. The test session is offline already."""
    script = Path(script)
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [str(script), *map(str, args)]
    with contextlib.chdir(REPO_ROOT), _argv(argv), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            runpy.run_path(str(script), run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_status(exit_.code)
        except Exception:  # a crash, reported as a child process would report it
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved, sys.argv = sys.argv, argv
    try:
        yield
    finally:
        sys.argv = saved


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write rows (dicts, or lines already serialised) one per line."""
    path = Path(path)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def stand_in_model(parent: str | Path, name: str) -> str:
    """An empty model directory, for a command whose model a test replaces by a stand-in: it passes the
    commands' check that a model path exists, and nothing ever loads it."""
    path = Path(parent) / "stand-in-models" / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class StandInGeneratorBase:
    """What every generator offers besides generate(): a context manager, close() and engine(); for stand-ins
    that script a model's replies (the scheduling and file handling around them is what is tested)."""

    def engine(self) -> dict[str, Any]:
        return {"name": "stand-in"}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
