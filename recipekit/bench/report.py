"""One benchmark report, written as JSON and Markdown side by side (atomically)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from recipekit.dataio.atomic import atomic_write_text
from recipekit.reporting.manifest import git_revision, package_versions

CPU_LABEL = ("CPU code-path check with tiny shapes: every variant's code ran on a tiny random model. "
             "These timings are NOT performance figures and must not be quoted as such.")
SKIPPED = "skipped"
V = TypeVar("V")  # a variant: has name, description and unavailable()


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})",
        "cuda": cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": git_revision(),
        "packages": {k: v for k, v in package_versions().items() if k in
                     ("axolotl", "torch", "transformers", "peft", "vllm", "flash-attn")},
    }


def skipped(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"variant": name, "status": SKIPPED, "reason": reason, **extra}


def runnable(variants: Iterable[V], results: list[dict[str, Any]]) -> Iterator[V]:
    """The variants that can run here, in order; each one that cannot is added to `results` as
    skipped, with the reason its `unavailable()` gives, where it stands in the order."""
    for variant in variants:
        reason = variant.unavailable()
        if reason:
            results.append(skipped(variant.name, reason, description=variant.description))
        else:
            yield variant


def cell(value: Any) -> str:
    """A benchmark figure as a table shows it: thousands separated, 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_report(out: str | Path, title: str, report: dict[str, Any],
                 sections: list[tuple[str, str]]) -> tuple[Path, Path]:
    """Write OUT.json (the data) and OUT.md (title, label, environment, then each (heading, body))."""
    out = Path(out)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    env = report["environment"]
    parts = [f"# {title}", ""]
    if report.get("label"):
        parts += [f"> **{report['label']}**", ""]
    parts += [f"Device: {env['device']} - torch {env['torch']} - git {env['git'].get('commit') or '?'}"
              f"{' (uncommitted changes)' if env['git'].get('dirty') else ''}", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip("\n"), ""]
    atomic_write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    atomic_write_text(md_path, "\n".join(parts).rstrip() + "\n")
    return json_path, md_path
