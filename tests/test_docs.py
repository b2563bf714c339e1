"""The README and the pages in docs/ name only what exists: every repository path, every script or
module they run (each answers `--help`), every relative link and the heading it points at; the README
links every page, and each recipe's header names the page that walks through it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run_script

from recipekit.paths import RECIPES_DIR, REPO_ROOT
from recipekit.training.recipe_config import header_comment

DOCS_DIR = REPO_ROOT / "docs"
DOCS = [REPO_ROOT / "README.md", *sorted(DOCS_DIR.glob("*.md")), RECIPES_DIR / "launch" / "README.md"]

# A repository path: it starts a word (not inside a URL or another path) in one of the project's folders.
REPO_PATH = re.compile(r"(?<![\w./~$-])((?:recipes|eval|merge|dataset_prep|bench|docs|locks|recipekit|chat_templates"
                       r"|tests)/[\w./*{}…-]*|requirements[\w-]*\.txt|Makefile)")
# A segment in capitals (OUT, NAME.yml, OUTPUT_DIR) stands for a name the reader picks.
PLACEHOLDER = re.compile(r"(?:^|/)(?!README\b)[A-Z][A-Z0-9_]*(?:[./]|$)|[*{}…]")
URL = re.compile(r"\bhttps?://\S+")
# what a command is told to write, which exists only once it has run
OUTPUT_OPTION = re.compile(r"--(?:out|output|test-output|rejects)[ =]\S+")
# `python SCRIPT.py` or `python -m MODULE`, the interpreter named by any path (.venv/bin/python)
COMMAND = re.compile(r"(?:^|[\s;&(`])(?:[\w./-]*/)?python3?\s+(?:-m\s+(recipekit(?:\.\w+)+)|([\w./-]+\.py))\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = "```"


@dataclass(frozen=True)
class Line:
    doc: Path
    number: int
    text: str
    code: bool  # inside a fenced block

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.number}"


def doc_lines(doc: Path) -> list[Line]:
    """The lines of DOC, continuation lines (ending in a backslash) of a code block joined to the first."""
    lines: list[Line] = []
    code = joining = False
    for number, text in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if text.lstrip().startswith(FENCE):
            code, joining = not code, False
            continue
        if joining:
            last = lines[-1]
            lines[-1] = Line(doc, last.number, last.text.rstrip("\\") + " " + text.strip(), code)
        else:
            lines.append(Line(doc, number, text, code))
        joining = code and text.rstrip().endswith("\\")
    return lines


def headings(doc: Path) -> set[str]:
    """The anchors GitHub gives DOC's headings: lower case, punctuation dropped, spaces as dashes."""
    slugs: set[str] = set()
    for line in doc_lines(doc):
        if not line.code and (match := re.match(r"#{1,6}\s+(.+)", line.text)):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            slugs.add(slug if slug not in slugs else next(f"{slug}-{i}" for i in range(1, 99) if f"{slug}-{i}" not in slugs))
    return slugs


def named_paths(line: Line) -> list[str]:
    """The repository paths LINE names, those with placeholders left out."""
    found = (match.rstrip(".:") for match in REPO_PATH.findall(OUTPUT_OPTION.sub("", URL.sub("", line.text))))
    return [path for path in found if not PLACEHOLDER.search(path)]


def commands() -> dict[str, Line]:
    """Each script or module a page runs, with the first line that runs it."""
    found: dict[str, Line] = {}
    for doc in DOCS:
        for line in doc_lines(doc):
            spans = [line.text] if line.code else re.findall(r"`([^`]+)`", line.text)
            for span in spans:
                for module, script in COMMAND.findall(span):
                    found.setdefault(module or script, line)
    return found


COMMANDS = commands()


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(REPO_ROOT)))
def test_every_path_a_page_names_exists(doc):
    missing = [f"{line.where()}: {path}" for line in doc_lines(doc) for path in named_paths(line) if not (REPO_ROOT / path).exists()]
    assert not missing, "paths the docs name that the repository lacks:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(doc):
    broken = []
    for line in doc_lines(doc):
        for target in LINK.findall(line.text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{line.where()}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in headings(file):
                broken.append(f"{line.where()}: {target}: no heading '{anchor}' in {file.relative_to(REPO_ROOT)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_docs_run_commands():
    assert len(COMMANDS) > 10, sorted(COMMANDS)  # the parsing still finds the commands


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_the_docs_run_answers_help(command):
    line = COMMANDS[command]
    script = REPO_ROOT / (command if command.endswith(".py") else command.replace(".", "/") + ".py")
    assert script.is_file(), f"{line.where()}: {command}: no such script or module"
    done = run_script(script, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout, (
        f"{line.where()}: `python {'' if command.endswith('.py') else '-m '}{command} --help` exited "
        f"{done.returncode}:\n{done.stderr[-2000:]}")


def test_the_readme_links_every_page():
    linked = {(REPO_ROOT / target.partition("#")[0]).resolve()
              for line in doc_lines(REPO_ROOT / "README.md") for target in LINK.findall(line.text)}
    unlinked = [page.name for page in sorted(DOCS_DIR.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"README.md links no page {unlinked}"


@pytest.mark.parametrize("recipe", sorted(RECIPES_DIR.glob("*.yml")), ids=lambda path: path.stem)
def test_every_recipe_header_names_its_step_by_step_page(recipe):
    header = "\n".join(header_comment(recipe))
    match = re.search(r"^# Step by step: (docs/[\w-]+\.md)$", header, re.MULTILINE)
    assert match, f"{recipe.name}: the header lacks a line '# Step by step: docs/PAGE.md'"
    page = REPO_ROOT / match.group(1)
    assert page.is_file(), f"{recipe.name}: {match.group(1)} does not exist"
    assert f"recipes/{recipe.name}" in page.read_text(encoding="utf-8"), f"{match.group(1)} never names {recipe.name}"
