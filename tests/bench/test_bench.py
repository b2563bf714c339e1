"""The benchmark harness: packing figures on hand-checkable lengths, the FLOPs/MFU formula on
hand numbers, and the tiny CPU run of every suite (GPU-only variants reported as skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from recipekit.bench import flops, generation_speed, packing
from recipekit.bench.cli import main as bench_main
from recipekit.bench.model_build import load_text_config
from recipekit.bench.report import CPU_LABEL
from recipekit.generation.engine import length_sorted_batches
from recipekit.testing.tiny_models import tiny_model_path


def test_unpacked_rows_pad_to_a_multiple_of_64():
    figures = packing.unpacked([250] * 4, micro_batch_size=1, sequence_len=512)
    assert (figures.passes, figures.real_tokens, figures.computed_tokens) == (4, 1000, 4 * 256)
    pairs = packing.unpacked([100] * 4, micro_batch_size=2, sequence_len=512)
    assert (pairs.passes, pairs.computed_tokens) == (2, 2 * 2 * 128)


def test_packing_fills_bins_and_pads_them_to_sequence_len():
    two_per_bin = packing.packed([250] * 4, 1, 512, varlen=True)
    assert two_per_bin.passes == 2 and two_per_bin.rows_per_epoch == 4
    assert two_per_bin.real_fraction == pytest.approx(1000 / (2 * 1 * 512))
    one_per_bin = packing.packed([300] * 4, 1, 512, varlen=True)
    assert one_per_bin.passes == 4 and one_per_bin.real_fraction == pytest.approx(1200 / (4 * 512))
    # SDPA-style packing: micro_batch_size bins of sequence_len per pass
    sdpa = packing.packed([250] * 8, 2, 512, varlen=False)
    assert sdpa.passes == 2 and sdpa.computed_tokens == 2 * 2 * 512


def test_rows_longer_than_sequence_len_are_dropped():
    figures = packing.unpacked([600, 100, 200], 1, 512)
    assert figures.rows_dropped_too_long == 1 and figures.real_tokens == 300
    with pytest.raises(ValueError, match="positive"):
        packing.unpacked([0, 10], 1, 512)


def test_accumulation_keeps_rows_per_step():
    figures = packing.packed([250] * 4, 1, 512, varlen=True)  # 2 rows per pass
    assert packing.accumulation_for_rows(16, figures) == 8


@pytest.mark.parametrize("micro", [1, 4])
def test_each_mode_gets_the_accumulation_for_the_recipes_rows_per_step(micro):
    from recipekit.bench.suites import _recipe_rows

    config = {"micro_batch_size": micro, "sequence_len": 512, "gradient_accumulation_steps": 3,
              "sample_packing": True, "attn_implementation": "flash_attention_2"}
    rows = {r["mode"]: r for r in _recipe_rows(Path("r.yml"), config, "data", [250] * 96, seed=0)}
    # the recipe packs two rows per bin into micro_batch_size x 512 tokens: 2 x micro rows per pass, 3 passes a step
    assert {r["recipe_mode"] for r in rows.values()} == {"packed_varlen"}
    assert rows["packed_varlen"]["rows_per_pass"] == 2 * micro
    assert {r["rows_per_optimizer_step_now"] for r in rows.values()} == {6 * micro}
    assert rows["packed_varlen"]["accumulation_for_same_rows_per_step"] == 3
    assert rows["unpacked"]["accumulation_for_same_rows_per_step"] == 6  # micro rows per pass


def test_flops_and_mfu_on_hand_numbers():
    assert flops.causal_pairs(4) == 10
    assert flops.causal_pairs(5, window=2) == 3 + 3 * 2
    # 6*N*l + 12*heads*head_dim*pairs = 6*10*4 + 12*2*3*10
    assert flops.training_flops([4], n_params=10, layers=[(2, 3, None)]) == 960
    assert flops.mfu(4e12, seconds=2.0, peak_tflops=4.0) == pytest.approx(0.5)
    assert flops.mfu(4e12, seconds=2.0, peak_tflops=None) is None
    assert flops.peak_tflops_for("NVIDIA H100 80GB HBM3") == ("H100 SXM", 989.4)
    assert flops.peak_tflops_for("NVIDIA H100 PCIe")[0] == "H100 PCIe"


@pytest.mark.parametrize("family, tied", [("qwen3", True), ("llama", False)])
def test_matmul_params_count_the_output_projection_once(family, tied):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path(family))
    total = sum(p.numel() for p in model.parameters())  # tied weights are listed once
    vocab_x_hidden = model.get_input_embeddings().weight.numel()
    assert flops.matmul_params(model) == (total if tied else total - vocab_x_hidden)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "cpu_tiny"
    assert bench_main(["--suite", "all", "--tiny", "--out", str(out)]) == 0
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text()


def _by_name(section):
    return {v["variant"]: v for v in section["variants"]}


def test_tiny_run_measures_cpu_variants_and_skips_gpu_ones(tiny_report):
    report, markdown = tiny_report
    assert report["label"] == CPU_LABEL and CPU_LABEL in markdown
    train, generate = _by_name(report["train"]), _by_name(report["generate"])
    for name in ("a_sdpa_unpacked", "a2_sdpa_packed"):
        assert train[name]["status"] == "measured" and train[name]["tokens_per_second"] > 0
        assert train[name]["speedup_vs_card"] is None  # a tiny run is never set against the card
    assert train["a2_sdpa_packed"]["rows_per_pass"] > 1 == train["a_sdpa_unpacked"]["rows_per_pass"]
    for name in ("b_flash_varlen_packed", "c_flash_varlen_packed_kernels"):
        assert train[name]["status"] == "skipped" and "CUDA" in train[name]["reason"]
    rows, new_tokens = report["generate"]["rows"], report["generate"]["new_tokens"]
    for name in ("a_loop", "b_batched_unsorted", "b_batched_sorted", "b_batched_sorted_static"):
        row = generate[name]
        assert row["status"] == "measured" and (row["timed_rows"], row["tokens"]) == (rows, rows * new_tokens)
        assert not row["extrapolated"] and row["tokens_per_second"] > 0
        assert row.get("same_outputs_as_loop", True)  # fp32: batching changes no greedy token
    assert generate["b_batched_sorted"]["prompt_padding"] < generate["b_batched_unsorted"]["prompt_padding"]
    assert generate["c_vllm"]["status"] == "skipped" and "heads of 32 and wider" in generate["c_vllm"]["reason"]
    assert "skipped" in markdown and "needs CUDA" in markdown


def test_prompt_padding_of_each_batching_plan_on_hand_numbers():
    lengths = [10, 2, 9, 3]
    assert generation_speed.padding_fraction(lengths, generation_speed.one_row_at_a_time(lengths, 1)) == 0
    unsorted = generation_speed.input_order_batches(lengths, 2)
    assert unsorted == [[0, 1], [2, 3]] and generation_speed.padding_fraction(lengths, unsorted) == 1 - 24 / 38
    by_length = length_sorted_batches(lengths, 2)
    assert by_length == [[0, 2], [3, 1]] and generation_speed.padding_fraction(lengths, by_length) == 1 - 24 / 26


def test_loop_timed_on_fewer_rows_is_extrapolated_and_compared_on_those_rows():
    config = load_text_config(None, tiny=True)
    loop, by_length = generation_speed.GEN_VARIANTS[0], generation_speed.GEN_VARIANTS[2]
    section = generation_speed.run_generation_suite(
        config, [12, 30, 7], new_tokens=2, batch_size=3, loop_rows=1, device="cpu", dtype=torch.float32, seed=0,
        variants=(loop, by_length))
    first, batched = section["variants"]
    assert (first["timed_rows"], first["extrapolated"]) == (1, True)
    assert first["total_seconds_all_rows"] == pytest.approx(first["seconds"] * 3, abs=3 * 5e-5)  # seconds: 4 decimals
    assert (batched["timed_rows"], batched["tokens"], batched["same_outputs_as_loop"]) == (3, 6, True)


def test_tiny_run_reports_packing_per_recipe(tiny_report):
    report, _ = tiny_report
    rows = report["packing"]["rows"]
    recipes = {r["recipe"] for r in rows}
    assert {"supervisor_stage2.yml", "supervisor_stage1.yml", "cs_chatbot_gemma3_4b.yml"} <= recipes
    assert not recipes & {"sppo_gemma2_9b.yml", "reward_ja_3b.yml"}  # paired rows, not conversations
    synthetic = [r for r in rows if r["data"] == "supervisor_stage2_synthetic"]
    assert {r["mode"] for r in synthetic} == {"unpacked", "packed_sdpa", "packed_varlen"}
    for row in rows:
        assert row["real_tokens"] <= row["computed_tokens"]


def test_full_run_without_a_model_config_fails_clearly(tmp_path, capsys):
    out = tmp_path / "report"
    assert bench_main(["--suite", "train", "--out", str(out)]) == 2
    assert "--model-config is required" in capsys.readouterr().err
    assert not out.with_suffix(".json").exists()
