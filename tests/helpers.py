"""Helpers shared by the test modules: running a command-line script, reading and writing JSONL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

from recipekit.paths import REPO_ROOT
from recipekit.testing.offline import offline_env


def run_script(script: str | Path, *args: Any, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python SCRIPT ARGS...` from the repository root, offline, capturing its text output."""
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=REPO_ROOT, env=offline_env(),
                          capture_output=True, text=True, timeout=timeout)


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
