"""recipekit/bench/projection.py: the arithmetic of one row worked by hand, and the choices it makes."""

from __future__ import annotations

import pytest

from recipekit.bench import projection
from recipekit.bench.projection import WORKLOADS, project

H100_PEAK = 989.4e12  # dense BF16 FLOP/s, flops.py's table


def workload(recipe, stage="train"):
    return next(w for w in WORKLOADS if w.recipe == recipe and w.stage == stage)


def test_supervisor_stage2_at_the_cards_scale_by_hand():
    row = project(workload("supervisor_stage2"), 1, mfu=0.30)
    # 3,771 rows, 7,095,598 tokens (bench's synthetic set) x 7 epochs; N = 11.95e9; one H100 at 30 % MFU
    tokens = 7_095_598 * 7
    assert row["tokens"] == pytest.approx(49_669_186)
    assert row["flops"] == pytest.approx(6 * 11.95e9 * 49_669_186)  # 3.561e18
    assert row["hours"] == pytest.approx(6 * 11.95e9 * tokens / (1 * H100_PEAK * 0.30) / 3600)
    assert row["hours"] == pytest.approx(3.333, abs=1e-3)
    # LoRA: the frozen bf16 weights, 2 x 11.95e9 = 23.9 GB; checkpointed activations of one 4,096-token row:
    # 48 layers x 4096 x 3840 x 2 + 34 x 4096 x 3840 (one layer recomputed) + 4096 x 262,144 x 6 (logits)
    assert row["states_gb"] == pytest.approx(23.9)
    assert row["activations_gb"] == pytest.approx((48 * 4096 * 3840 * 2 + 34 * 4096 * 3840 + 4096 * 262_144 * 6) / 1e9)
    assert row["gpus"] == 1 and row["engine"] == "one GPU" and row["fits"]
    assert row["arithmetic"] == "4.97e+07 x 6 x 1.195e+10 / (1 x 989.4e12 x 0.3) = 3.33 h"


def test_the_cards_wall_time_implies_the_assumed_mfu():
    """6 h 02 min on half an H200 for the same tokens: MFU 0.33, next to the 0.30 the table assumes."""
    implied = projection.card_check(workload("supervisor_stage2"), 6 * 3600 + 2 * 60, 0.5, 989.4)
    assert implied == pytest.approx(6 * 11.95e9 * 49_669_186 / (21_720 * 0.5 * H100_PEAK), rel=1e-9)
    assert implied == pytest.approx(0.331, abs=1e-3)


def test_more_data_adds_gpus_until_the_target_and_sharding_until_it_fits():
    sppo = workload("sppo_gemma2_9b")
    row = project(sppo, 100, target_hours=24)
    assert row["gpus"] == 32 and projection.hours(sppo, 100, 16, 989.4, 0.30) > 24 >= row["hours"]  # 8 -> 16 -> 32
    assert not row["card_batch_kept"]  # 32 GPUs x 8 pairs > the card's 64 pairs a step
    # ZeRO-3 shards policy, gradients, RMSprop state and the reference: (2 + 2 + 8 + 2) / 32 bytes a parameter
    assert row["states_gb"] == pytest.approx(14 / 32 * 9.24)
    # a 48 GB GPU: 8 pairs of 1,024-token sequences no longer fit, half of them do
    small = project(sppo, 1, gpu="L40S", gpu_memory_gb=48)
    assert (small["engine"], small["micro_batch_rows"], small["fits"]) == ("zero3", 4, True)
    # the reward model on one 48 GB GPU: only optimizer offload fits
    assert project(workload("reward_ja_3b"), 1, gpu="L40S", gpu_memory_gb=48)["engine"] == "zero3_offload"


def test_generation_scales_by_vllm_replicas():
    row = project(workload("sppo_gemma2_9b", "generate"), 10, generation_mfu=0.08)
    assert row["engine"] == f"vLLM x {row['gpus']} replicas" and row["states_gb"] == pytest.approx(18.48)
    assert row["hours"] == pytest.approx(600_000 * 5 * 650 * 2 * 9.24e9 / (row["gpus"] * H100_PEAK * 0.08) / 3600)


def test_the_command_prints_the_table(capsys):
    assert projection.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PROJECTION on H100 SXM") and "assumed, not measured" in out
    assert out.count("| supervisor_stage2 | train |") == 3
