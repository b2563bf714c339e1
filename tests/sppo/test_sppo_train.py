"""`axolotl train recipes/sppo_gemma2_9b.yml` on the tiny Gemma 2 trains with the paper's loss, not DPO's.

At the first step the policy is its own reference, so every log-ratio is 0 and the loss
is known in closed form from the data alone: eta^2 ((P_win - 1/2)^2 + (P_lose - 1/2)^2) / 2,
averaged over the batch. One batch holds every fixture pair, so the first logged loss
must equal that mean. TRL's sigmoid DPO loss would log log(2) there, and sppo_hard
eta^2 / 2.
"""

from __future__ import annotations

import json
import math

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.smoke import smoke_train
from recipekit.training.manifest_plugin import CURVES_JSON

pytestmark = pytest.mark.train

RECIPE = RECIPES_DIR / "sppo_gemma2_9b.yml"
PAIRS = FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl"
ETA = 1000.0  # 1 / rl_beta of the recipe
LOGGED_DIGITS = 1e-3  # the trainer prints metrics with four significant digits


@pytest.fixture(scope="module")
def pairs():
    return [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def run(pairs, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sppo-train")
    return smoke_train(RECIPE, workdir, steps=2, extra={"micro_batch_size": len(pairs)})


def test_losses_are_finite(run):
    assert len(run.losses) == 2
    assert all(math.isfinite(x) for x in run.losses)


def test_first_step_loss_is_the_sppo_loss_at_zero_log_ratio(run, pairs):
    expected = sum(
        ETA**2 * ((p["chosen_probs_win"] - 0.5) ** 2 + (p["chosen_probs_lose"] - 0.5) ** 2) / 2 for p in pairs
    ) / len(pairs)
    assert run.losses[0] == pytest.approx(expected, rel=LOGGED_DIGITS)


def test_logs_the_win_rate_targets_it_regresses_onto(run, pairs):
    first = run.log_records[0]
    target_chosen = sum(ETA * (p["chosen_probs_win"] - 0.5) for p in pairs) / len(pairs)
    target_rejected = sum(ETA * (p["chosen_probs_lose"] - 0.5) for p in pairs) / len(pairs)
    assert float(first["sppo/target_chosen"]) == pytest.approx(target_chosen, rel=LOGGED_DIGITS)
    assert float(first["sppo/target_rejected"]) == pytest.approx(target_rejected, rel=LOGGED_DIGITS)
    assert float(first["sppo/logratio_chosen"]) == 0.0


def test_the_policy_moves_away_from_its_reference(run):
    second = run.log_records[1]
    assert float(second["sppo/logratio_chosen"]) != 0.0


def test_the_curves_hold_the_reward_margins_and_accuracies_it_logged(run):
    curves = json.loads((run.output_dir / CURVES_JSON).read_text(encoding="utf-8"))
    for key in ("rewards/margins", "rewards/accuracies"):
        assert curves[key]["step"] == [1, 2]
        assert curves[key]["value"] == pytest.approx([float(r[key]) for r in run.log_records], rel=LOGGED_DIGITS)
    # the policy starts as its own reference: no margin, and no pair where chosen beats rejected
    assert curves["rewards/margins"]["value"][0] == 0.0 and curves["rewards/accuracies"]["value"][0] == 0.0
    assert curves["rewards/margins"]["value"][1] != 0.0
