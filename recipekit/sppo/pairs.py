"""Turn K ranked responses per prompt into one SPPO training pair with soft win rates.

A ranker gives each of a prompt's K responses a score s. Under the Bradley-Terry model
response i beats response j with probability P[i][j] = 1 / (1 + exp(s_j - s_i)). The pair
is the best response (argmax s, the first one on ties) against the worst (argmin s), and
carries the win rates the paper's loss regresses onto: each one's mean probability of
beating the whole set, its own 0.5 self-term included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect, finish
from recipekit.dataio.rows import FieldError

USAGE = """
    python dataset_prep/sppo_pairs.py --input data/sppo/iter1_scored.jsonl --output data/sppo/iter1_pairs.jsonl

Input rows: {"prompt", "responses": [K strings], "scores": [K numbers]}. Output rows:
{"chosen": [user, assistant], "rejected": [user, assistant], "chosen_probs",
"chosen_probs_win", "chosen_probs_lose"}. A row with fewer than 2 responses, all scores
equal, or identical best and worst texts is rejected with its reason.
"""
PROB_COLUMNS = ("chosen_probs", "chosen_probs_win", "chosen_probs_lose")


def win_probability(score_i: float, score_j: float) -> float:
    """P(i beats j) = 1 / (1 + exp(s_j - s_i)), without overflow for far-apart scores."""
    margin = score_i - score_j
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    odds = math.exp(margin)
    return odds / (1.0 + odds)


def preference_matrix(scores: Sequence[float]) -> list[list[float]]:
    return [[win_probability(s_i, s_j) for s_j in scores] for s_i in scores]


def _check_scored_row(row: dict[str, Any]) -> tuple[str, list[str], list[float]]:
    prompt = fields.text(row, "prompt")
    responses = fields.text_list(row, "responses")
    scores = row.get("scores")
    if not isinstance(scores, list):
        raise FieldError("scores", "must be a list of numbers")
    for index, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise FieldError(f"scores[{index}]", f"must be a finite number, got {score!r}")
    if len(scores) != len(responses):
        raise FieldError("scores", f"has {len(scores)} entries for {len(responses)} responses")
    if len(responses) < 2:
        raise FieldError("responses", f"needs at least 2 responses to form a pair, got {len(responses)}")
    if max(scores) == min(scores):
        raise FieldError("scores", "all scores are equal, so there is no preference to learn")
    return prompt, responses, [float(s) for s in scores]


def build_pair(row: dict[str, Any]) -> dict[str, Any]:
    """{"prompt", "responses", "scores"} -> {"chosen", "rejected", *PROB_COLUMNS}; FieldError if unusable."""
    prompt, responses, scores = _check_scored_row(row)
    # Chat templates trim message content and Axolotl locates the reply in the rendered turn
    # by exact match, so untrimmed text would leave an empty chosen or rejected reply.
    prompt, responses = prompt.strip(), [r.strip() for r in responses]
    chosen = max(range(len(scores)), key=scores.__getitem__)
    rejected = min(range(len(scores)), key=scores.__getitem__)
    if responses[chosen] == responses[rejected]:
        raise FieldError("responses", f"best ({chosen}) and worst ({rejected}) responses are the same text")
    matrix = preference_matrix(scores)
    user = {"role": "user", "content": prompt}
    return {
        "chosen": [user, {"role": "assistant", "content": responses[chosen]}],
        "rejected": [user, {"role": "assistant", "content": responses[rejected]}],
        "chosen_probs": matrix[chosen][rejected],
        "chosen_probs_win": sum(matrix[chosen]) / len(scores),
        "chosen_probs_lose": sum(matrix[rejected]) / len(scores),
    }


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__ + USAGE)
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    stats = Stats()
    records = collect(args.input, build_pair, stats, args.skip_invalid)
    return finish(args, stats, {args.output: records}, lambda record: record["chosen"])
