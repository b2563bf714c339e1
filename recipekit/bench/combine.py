"""One report from the reports of several bench runs, with a manifest beside it.

bench/gpu.sh runs each suite (and vLLM) in its own process under its own time limit, so a part that
fails or runs out of time loses only itself. A part whose report is missing is listed as not measured,
with the last line of its log (`PART.log` beside `PART.json`), never estimated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from recipekit.bench import suites
from recipekit.bench.model_build import BenchError
from recipekit.bench.report import environment, write_report
from recipekit.reporting.manifest import write_manifest


def _last_line(path: Path) -> str | None:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    return next((line for line in reversed(lines) if line), None)


def _missing_markdown(missing: list[dict[str, Any]]) -> str:
    return "\n".join(f"- `{m['part']}`: no report (the run failed or ran out of time); last line of `{m['log']}`: "
                     f"{m['last_log_line'] or '(no log)'}" for m in missing)


def combine_reports(out: str | Path, parts: Sequence[Path], *, argv: list[str]) -> tuple[Path, Path]:
    """Write OUT.json/OUT.md from the part reports, and OUT's folder/manifest.json."""
    loaded: dict[str, Any] = {}
    missing: list[dict[str, Any]] = []
    for path in map(Path, parts):
        log = path.with_suffix(".log")
        try:
            loaded[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            missing.append({"part": path.stem, "report": str(path), "log": str(log), "last_log_line": _last_line(log)})
        except json.JSONDecodeError as err:
            raise BenchError(f"{path}: not a bench report: {err}") from err
    sections = [(f"{heading} - {name}", body) for name, part in loaded.items()
                for heading, body in suites.suite_sections(part)]
    if missing:
        sections.append(("Not measured", _missing_markdown(missing)))
    labels = sorted({part["label"] for part in loaded.values() if part.get("label")})
    report = {"environment": environment(), "label": " ".join(labels) or None, "parts": loaded, "missing": missing}
    json_path, md_path = write_report(out, "Benchmark report", report, sections)
    inputs = [p for path in map(Path, parts) for p in (path, path.with_suffix(".log")) if p.exists()]
    write_manifest(json_path.parent, argv=argv, inputs=inputs,
                   extra={"report": [str(json_path), str(md_path)], "parts": list(loaded),
                          "missing_parts": [m["part"] for m in missing]})
    return json_path, md_path
