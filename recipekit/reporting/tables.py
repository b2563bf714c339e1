"""Results people read: metrics.json, a Markdown table, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from recipekit.dataio.atomic import atomic_open, atomic_write_text


def write_json(path: str | Path, data: Any) -> Path:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return Path(path)


def write_metrics(out: str | Path, metrics: dict[str, Any], markdown: str) -> None:
    """OUT/metrics.json and OUT/metrics.md (its table), each written whole or not at all."""
    write_json(Path(out) / "metrics.json", metrics)
    atomic_write_text(Path(out) / "metrics.md", markdown)


def fmt(value: Any, percent: bool = False, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value * 100:.2f} %" if percent else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]],
                   cell: Callable[[Any], str] = str) -> str:
    """A Markdown table; each row is its cells in header order, or a mapping from the header's names
    (a name it lacks: None), and `cell` writes each value."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        values = [row.get(name) for name in header] if isinstance(row, Mapping) else row
        lines.append("| " + " | ".join(cell(value) for value in values) + " |")
    return "\n".join(lines) + "\n"


def unavailable_note(metrics: dict[str, Any]) -> str:
    """A line naming each metric that could not be computed, and why ('' when none)."""
    missing = metrics.get("unavailable") or {}
    return "\nUnavailable: " + "; ".join(f"{k}: {v}" for k, v in missing.items()) + "\n" if missing else ""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return Path(path)


def confusion_matrix_png(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str],
                         path: str | Path, title: str) -> Path:
    """Rows are gold labels, columns predictions (including an 'unparsed' column)."""
    plt = _pyplot()
    columns = list(labels) + sorted({p for p in predicted if p not in labels})
    counts = [[sum(1 for g, p in zip(gold, predicted) if g == row and p == col) for col in columns] for row in labels]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(columns), 1.4 + 1.1 * len(labels)))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=20)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    peak = max(max(r) for r in counts) or 1
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    return save_figure(fig, path)


def bar_chart_png(groups: Sequence[str], series: dict[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Grouped bars: one group per name in `groups`, one bar per series."""
    plt = _pyplot()
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) * max(len(series), 1)), 4))
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(groups))], values, width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def histogram_png(values: Sequence[float], path: str | Path, title: str, xlabel: str, bins: int = 30) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(list(values), bins=bins)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    return save_figure(fig, path)


def line_panels_png(panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], path: str | Path,
                    title: str, xlabel: str = "step") -> Path:
    """One panel per entry of `panels`, side by side; each panel draws its {label: (x, y)} lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, layout="constrained")
    for ax, (name, lines) in zip(axes[0], panels.items()):
        for label, (x, y) in lines.items():
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # learning rates: 2e-4, not 0.0002
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return save_figure(fig, path)
