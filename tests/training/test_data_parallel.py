"""Two CPU processes (torchrun, gloo) run the real `axolotl train` as one data-parallel job,
and train exactly what one process trains on the same rows.

Each rank records, through a plugin (recipekit/testing/cpu_parallel.py), its process group, the
class the trainer steps through, the gradients handed to the optimiser and its trainable
parameters at the start and after every step. The 2-process run must be one gloo group of
two in DistributedDataParallel, hold bit-identical gradients and parameters on both ranks,
and match the 1-process run in the logged loss and gradient norm and in every gradient and
parameter update, step 1 and step 2.

What makes a 1-process run the same maths. Axolotl 0.19 takes each micro-batch's mean loss
(it switches off transformers' token counting across micro-batches, because the models'
forward() does not take `num_items_in_batch`), divides it by the accumulation steps, and
DistributedDataParallel averages the gradients over processes: an optimiser step is the
mean over all its micro-batches, on every rank and accumulation step. accelerate deals a
step's micro-batches to the ranks in turn (rank 0 the 1st and 3rd, rank 1 the 2nd and
4th). So a run of 2 processes x micro-batch 1 x accumulation 2 is one process with
micro-batch 1 x accumulation 4 over the same four rows, when the rows come in file order
(`curriculum_sampling: true`: no shuffle, a sequential sampler). The SPPO loss is a mean
over pairs, and each micro-batch holds one pair, so 2 x 1 x 3 is one micro-batch of all
six fixture pairs, and every step sees all of them in any order. Adapters start from the
same weights because the manifest plugin every recipe lists seeds before the model is built.

Not run here, and why:
- DeepSpeed (ZeRO-2/3) runs on CPU processes too: test_deepspeed.py.
- FSDP2: test_fsdp2.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from recipekit.paths import RECIPES_DIR
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.cpu_parallel import SAME_ROWS, far_from, read_records, recorded_plugins, step_updates
from recipekit.testing.smoke import smoke_train
from recipekit.training.recipe_config import load_recipe

pytestmark = [pytest.mark.multiprocess, pytest.mark.train]

CHATBOT = RECIPES_DIR / "cs_chatbot_gemma3_4b.yml"
SPPO = RECIPES_DIR / "sppo_gemma2_9b.yml"
SPPO_PAIRS = FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl"
STEPS = (1, 2)  # the steps of the shared one-process SPPO run (conftest.py)
LOGGED_DIGITS = 1e-3  # the trainer prints metrics with four significant digits
SAME_MATHS = 1e-4  # relative; float32 sums taken in another order, nothing more


def _train(recipe, workdir, nproc, **extra):
    return smoke_train(recipe, workdir, steps=len(STEPS), extra={"plugins": recorded_plugins(recipe), **extra},
                       nproc=nproc)


def _records(run, nproc):
    return read_records(run.output_dir, len(STEPS), nproc)


@pytest.fixture(scope="module")
def sppo_one(sppo_one_process):
    return sppo_one_process, _records(sppo_one_process, 1)


# sppo: the recipe as written, computing the reference log-probs batch by batch;
# sppo-precomputed: computed once over the dataset, gathered from both ranks, written back by row
@pytest.fixture(scope="module", params=["sft", "sppo", "sppo-precomputed"])
def runs(request, tmp_path_factory):
    """(1-process run, its records, 2-process run, its records), records by step then rank."""
    if request.param == "sft":
        one = _train(CHATBOT, tmp_path_factory.mktemp("sft-1proc"), 1, gradient_accumulation_steps=4, **SAME_ROWS)
        one_records = _records(one, 1)
        two = _train(CHATBOT, tmp_path_factory.mktemp("sft-2proc"), 2, gradient_accumulation_steps=2, **SAME_ROWS)
    else:
        one, one_records = request.getfixturevalue("sppo_one")
        two = _train(SPPO, tmp_path_factory.mktemp(request.param), 2, micro_batch_size=1,
                     gradient_accumulation_steps=3, precompute_ref_log_probs=request.param == "sppo-precomputed")
    return one, one_records, two, _records(two, 2)


def test_two_processes_are_one_gloo_group_under_ddp(runs):
    _, one, _, two = runs
    for step in (0, *STEPS):
        assert [(r["world_size"], r["backend"], r["wrapper"]) for r in two[step]] == \
            [(2, "gloo", "DistributedDataParallel")] * 2
        assert one[step][0]["world_size"] == 1 and one[step][0]["wrapper"] != "DistributedDataParallel"


def test_both_ranks_hold_the_same_weights_after_every_step(runs):
    _, _, _, two = runs
    for step in (0, *STEPS):
        rank0, rank1 = two[step]
        assert all(torch.equal(rank0["params"][name], p) for name, p in rank1["params"].items()), f"step {step}"
        assert all(torch.equal(rank0["grads"][name], g) for name, g in rank1["grads"].items()), f"step {step}"


def test_first_step_logs_the_single_process_loss_and_grad_norm(runs):
    one_run, _, two_run, _ = runs
    assert len(two_run.log_records) == len(one_run.log_records) == len(STEPS)  # rank 0 logs, rank 1 does not
    for key in ("loss", "grad_norm"):
        assert float(two_run.log_records[0][key]) == pytest.approx(float(one_run.log_records[0][key]),
                                                                  rel=LOGGED_DIGITS)


def test_gradients_and_updates_equal_the_single_process_ones(runs):
    _, one, _, two = runs
    assert all(torch.equal(two[0][0]["params"][name], p) for name, p in one[0][0]["params"].items()), \
        "the runs do not start from the same weights"
    for step in STEPS:
        assert two[step][0]["grads"], f"step {step}: no gradients recorded"
        assert not far_from(two[step][0]["grads"], one[step][0]["grads"], SAME_MATHS), f"step {step}"
        updates = step_updates(two, step)
        assert any(u.abs().max() > 0 for u in updates.values()), f"step {step}: nothing trained"
        assert not far_from(updates, step_updates(one, step), 10 * SAME_MATHS), f"step {step}"


@pytest.mark.parametrize("runs", ["sppo", "sppo-precomputed"], indirect=True)
def test_sppo_first_step_loss_is_the_closed_form_on_every_pair(runs):
    """Policy = reference at step 1, so each log-ratio is 0 only if each pair met its own
    reference log-probs; the loss is then eta^2 ((P_win - 1/2)^2 + (P_lose - 1/2)^2) / 2 averaged."""
    _, _, two_run, _ = runs
    eta = 1.0 / float(load_recipe(SPPO)["rl_beta"])
    pairs = [json.loads(line) for line in SPPO_PAIRS.read_text(encoding="utf-8").splitlines()]
    expected = sum(eta**2 * ((p["chosen_probs_win"] - 0.5) ** 2 + (p["chosen_probs_lose"] - 0.5) ** 2) / 2
                   for p in pairs) / len(pairs)
    first = two_run.log_records[0]
    assert float(first["loss"]) == pytest.approx(expected, rel=LOGGED_DIGITS)
    assert float(first["sppo/logratio_chosen"]) == float(first["sppo/logratio_rejected"]) == 0.0
