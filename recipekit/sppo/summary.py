"""What each self-play iteration achieved: pair statistics, the training loss, and the win-rate.

The win-rate compares the new policy with the one the iteration started from on held-out
prompts: one greedy reply from each, judged by the same ranker that built the pairs. A
higher score wins, equal scores (e.g. identical replies) count one half. When the driver
ran AlpacaEval, each row also carries that iteration's metrics and the table its figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from recipekit.dataio.atomic import atomic_write_text
from recipekit.reporting.tables import _pyplot, fmt, markdown_table, save_figure, write_json

COLUMNS = (
    ("iteration", "iteration"),
    ("pairs", "pairs"),
    ("rows_rejected", "rows rejected"),
    ("mean_chosen_score", "mean chosen score"),
    ("mean_rejected_score", "mean rejected score"),
    ("final_loss", "final train loss"),
    ("win_rate", "win-rate vs previous"),
    ("heldout", "held-out prompts"),
    ("prompts_over_limit", "prompts over limit"),
)
# From each iteration's AlpacaEval metrics, when the driver ran it (recipekit.sppo.alpaca_eval).
ALPACA_COLUMNS = (
    ("lc_win_rate", "AlpacaEval LC win rate"),
    ("win_rate", "AlpacaEval win rate"),
    ("avg_length", "AlpacaEval avg length"),
)


def outcome(new_score: float, old_score: float) -> float:
    """1 if the new policy's reply scores higher, 0.5 on a tie, 0 if lower."""
    return 1.0 if new_score > old_score else 0.5 if new_score == old_score else 0.0


def win_rate(new_scores: Sequence[float], old_scores: Sequence[float]) -> dict[str, Any]:
    outcomes = [outcome(n, o) for n, o in zip(new_scores, old_scores, strict=True)]
    return {"win_rate": sum(outcomes) / len(outcomes), "wins": outcomes.count(1.0), "ties": outcomes.count(0.5),
            "losses": outcomes.count(0.0), "heldout": len(outcomes)}


def iteration_row(number: int, start_model: str, checkpoint: Path, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pairs, train, judged = stats["pairs"], stats["train"], stats["winrate"]
    return {
        "iteration": number,
        "start_model": start_model,
        "checkpoint": str(checkpoint),
        "prompts": stats["generate"]["prompts"],
        "prompts_over_limit": stats["prompts"]["over_limit"],
        "pairs": pairs["pairs"],
        "rows_rejected": pairs["rows_rejected"],
        "mean_chosen_score": pairs["mean_chosen_score"],
        "mean_rejected_score": pairs["mean_rejected_score"],
        "mean_chosen_probs_win": pairs["mean_chosen_probs_win"],
        "mean_chosen_probs_lose": pairs["mean_chosen_probs_lose"],
        "final_loss": train["final_loss"],
        **judged,
        "alpaca_eval": stats.get("alpaca_eval"),
    }


def write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    """OUT/summary.json, summary.md (one row per iteration) and summary.png."""
    write_json(out / "summary.json", rows)
    alpaca = ALPACA_COLUMNS if any(row.get("alpaca_eval") for row in rows) else ()
    table = markdown_table(
        [title for _, title in COLUMNS + alpaca],
        [[fmt(row[key], percent=key == "win_rate") for key, _ in COLUMNS]
         + [fmt((row.get("alpaca_eval") or {}).get(key), percent=key != "avg_length") for key, _ in alpaca]
         for row in rows])
    atomic_write_text(out / "summary.md", "# SPPO self-play\n\n" + table)
    _plot(rows, out / "summary.png")


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    iterations = [row["iteration"] for row in rows]
    fig, (scores, wins) = plt.subplots(1, 2, figsize=(10, 4))
    scores.plot(iterations, [r["mean_chosen_score"] for r in rows], marker="o", label="chosen")
    scores.plot(iterations, [r["mean_rejected_score"] for r in rows], marker="o", label="rejected")
    scores.set_title("mean ranker score of the pairs")
    scores.legend()
    wins.bar(iterations, [r["win_rate"] for r in rows])
    wins.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    wins.set_ylim(0, 1)
    wins.set_title("win-rate of each iteration's policy vs the previous one")
    for ax in (scores, wins):
        ax.set_xlabel("iteration")
        ax.set_xticks(iterations)
    return save_figure(fig, path)
