"""Runs shared by the data-parallel tests of this folder (DDP and DeepSpeed)."""

from __future__ import annotations

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.cpu_parallel import recorded_plugins

SPPO = RECIPES_DIR / "sppo_gemma2_9b.yml"
SPPO_PAIRS = FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl"


@pytest.fixture(scope="session")
def sppo_one_process(shared_smoke_run):
    """Two steps of the SPPO recipe in one process, every fixture pair in each step's one micro-batch,
    ranks recorded: what a data-parallel run of the same global batch must reproduce."""
    pairs = len(SPPO_PAIRS.read_text(encoding="utf-8").splitlines())
    return shared_smoke_run(SPPO, 2, plugins=recorded_plugins(SPPO), micro_batch_size=pairs,
                            gradient_accumulation_steps=1)
