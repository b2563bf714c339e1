"""Runs shared by the data-parallel tests of this folder (DDP, DeepSpeed, FSDP2)."""

from __future__ import annotations

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.cpu_parallel import SAME_ROWS, recorded_plugins

SPPO = RECIPES_DIR / "sppo_gemma2_9b.yml"
SPPO_PAIRS = FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl"


@pytest.fixture(scope="session")
def sppo_one_process(shared_smoke_run):
    """Two steps of the SPPO recipe in one process, every fixture pair in each step's one micro-batch,
    ranks recorded: what a data-parallel run of the same global batch must reproduce."""
    pairs = len(SPPO_PAIRS.read_text(encoding="utf-8").splitlines())
    return shared_smoke_run(SPPO, 2, plugins=recorded_plugins(SPPO), micro_batch_size=pairs,
                            gradient_accumulation_steps=1)


@pytest.fixture(scope="session")
def one_process_over_same_rows(shared_smoke_run):
    """one_process_over_same_rows(recipe) -> one step of `recipe` in one process, micro-batch 1 x accumulation 4
    over SAME_ROWS, ranks recorded: what 2 processes x accumulation 2 must reproduce under any engine."""
    def run(recipe):
        return shared_smoke_run(recipe, 1, plugins=recorded_plugins(recipe), gradient_accumulation_steps=4,
                                **SAME_ROWS)

    return run
