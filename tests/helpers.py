"""Helpers shared by the test modules: running a command-line script, reading and writing JSONL, checking
a model card as the hub takes it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import runpy
import site
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterable

from huggingface_hub import ModelCard, metadata_load

from recipekit.cli import exit_status
from recipekit.generation.engine import ClosingGenerator
from recipekit.paths import REPO_ROOT, cache_dir

# A "/" that starts a word (not one inside a URL, a closing tag or a relative path such as ../stage1), then a
# path segment.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~<-])/[\w.@+~-]+(?:/[\w.@+~-]*)*")


def run_script(script: str | Path, *args: Any, cwd: str | Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS...` from `cwd` (the repository root), offline, its text output captured: run in
    this process (the script as __main__, its exit status from SystemExit), which skips the seconds
    of importing torch and transformers again in a child. The test session is offline already."""
    return _run_as_main(lambda: runpy.run_path(str(script), run_name="__main__"), str(script), args, cwd)


def run_module(module: str, *args: Any, cwd: str | Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS...`, as run_script runs a script."""
    def run() -> None:
        with warnings.catch_warnings():  # the module is imported already; running it again as __main__ is the aim
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    return _run_as_main(run, module, args, cwd)


def _run_as_main(run, name: str, args, cwd) -> subprocess.CompletedProcess:
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [name, *map(str, args)]
    with contextlib.chdir(cwd), _argv(argv), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            run()
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


class StandInGeneratorBase(ClosingGenerator):
    """What every generator offers besides generate(): a context manager and engine(); for stand-ins that script
    a model's replies (the scheduling and file handling around them is what is tested)."""

    def engine(self) -> dict[str, Any]:
        return {"name": "stand-in"}


def hub_card(path: str | Path, *, base_model: str | None, license: str | None, language: list[str] | None,
             private: Iterable[str | Path] = ()) -> ModelCard:
    """The model card at PATH, checked as the hub will take it: huggingface_hub's parser reads back every field
    of its metadata as written; base_model, license and language are the ones given (None: left out, and the
    card's summary says why); a pipeline tag, tags, and model-index test sets named by name; and no absolute
    path anywhere in it, nor the folders of this machine (PRIVATE adds the test's own)."""
    text = Path(path).read_text(encoding="utf-8")
    card = ModelCard.load(path)
    assert str(card) == text  # load -> save changes nothing
    assert metadata_load(path) == card.data.to_dict()  # every field, as the hub's parser reads it
    data = card.data
    assert (data.base_model, data.license, data.language) == (base_model, license, language)
    for field, value, row in (("base_model", base_model, "Base model"), ("license", license, "Licence"),
                              ("language", language, "Language")):
        if value is None:
            assert field not in card.data.to_dict() and f"| {row} | not named in the metadata: " in text
    assert data.pipeline_tag in ("text-generation", "text-classification") and data.library_name == "transformers"
    assert "recipekit" in data.tags
    for result in data.eval_results or []:  # a test set by its name, or by its hub id (then in datasets too)
        for name in (result.dataset_name, result.dataset_type):
            assert "/" not in name or name in (data.datasets or []), f"{path}: test set {name}"
            assert Path(name).suffix not in (".json", ".jsonl", ".csv", ".parquet"), f"{path}: test set {name}"
    absolute = ABSOLUTE_PATH.findall(text)
    assert not absolute, f"{path}: absolute paths {absolute}"
    folders = {*map(str, private), str(Path.home()), sys.prefix, *site.getsitepackages(), str(REPO_ROOT),
               tempfile.gettempdir(), str(cache_dir())}
    shown = [folder for folder in folders if folder in text]
    assert not shown, f"{path}: this machine's folders {shown}"
    return card


# new tokens of the base SmolLM2's replies that the conftest's smollm2_scored_by_transformers scores once
SMOLLM2_NEW_TOKENS = 24
