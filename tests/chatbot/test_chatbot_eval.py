"""eval/run_chatbot_eval.py on the tiny Gemma 3 model: generate, reference NLL, resume, score-only, bad input."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from helpers import read_jsonl, run_script

from recipekit.metrics.perplexity import reply_token_ids
from recipekit.paths import REPO_ROOT
from recipekit.templates.chat_format import inference_prompt, to_messages
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "eval" / "run_chatbot_eval.py"
TEST_ROWS = FIXTURES_DIR / "prepared" / "cs_chatbot_test.jsonl"


def run(*args):
    return run_script(SCRIPT, *args)

def write_lines(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def evaluated(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    done = run("--model", tiny_model("gemma3"), "--data", TEST_ROWS, "--out", out,
               "--max-new-tokens", 5, "--batch-size", 4, "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    return out, done


def test_predictions_keep_metadata_and_reference_nll(evaluated):
    out, _ = evaluated
    gold = {f"line-{i}": row for i, row in enumerate(read_jsonl(TEST_ROWS), start=1)}
    rows = read_jsonl(out / "predictions.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(gold)
    for row in rows:
        source = gold[row["id"]]
        assert (row["intent"], row["category"]) == (source["intent"], source["category"])
        assert row["reference"] == source["conversations"][-1]["value"]
        assert row["new_tokens"] <= 5
        assert row["ref_tokens"] > 0 and row["ref_nll"] > 0


def test_reference_nll_equals_the_models_own_masked_loss(evaluated, tiny_model):
    """The stored NLL sum is transformers' mean cross-entropy over the reply tokens times their count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = evaluated
    path = tiny_model("gemma3")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    stored = {r["id"]: r for r in read_jsonl(out / "predictions.jsonl")}
    for line_no, source in list(enumerate(read_jsonl(TEST_ROWS), start=1))[:4]:
        messages = to_messages(source["conversations"])
        prompt = inference_prompt(tokenizer, messages)
        prompt_ids, reply_ids = reply_token_ids(tokenizer, prompt, messages[-1]["content"])
        assert tokenizer.decode(reply_ids) == messages[-1]["content"]
        ids = torch.tensor([prompt_ids + reply_ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + reply_ids])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        row = stored[f"line-{line_no}"]
        assert row["ref_tokens"] == len(reply_ids)
        assert row["ref_nll"] == pytest.approx(loss * len(reply_ids), rel=1e-4)


def test_metrics_overall_and_per_group(evaluated):
    out, done = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    rows = read_jsonl(out / "predictions.jsonl")
    assert metrics["n"] == len(rows) == 12
    expected = math.exp(sum(r["ref_nll"] for r in rows) / sum(r["ref_tokens"] for r in rows))
    assert metrics["perplexity"] == pytest.approx(expected)
    for key in ("rouge_l", "bleu4", "chrf"):
        assert 0 <= metrics[key] <= 100
    for field in ("intent", "category"):
        per = metrics[f"per_{field}"]
        assert set(per) == {r[field] for r in rows}
        assert sum(g["n"] for g in per.values()) == 12
        for name, group in per.items():
            members = [r for r in rows if r[field] == name]
            assert group["perplexity"] == pytest.approx(
                math.exp(sum(r["ref_nll"] for r in members) / sum(r["ref_tokens"] for r in members)))
        assert (out / f"scores_by_{field}.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "metrics.md").read_text()
    assert table.startswith("| Metric |") and "Per intent" in table and "Per category" in table
    assert "Perplexity (references)" in done.stdout
    assert json.loads((out / "manifest.json").read_text())["inputs"]


def test_score_only_perfect_replies_and_missing_nll(evaluated, tmp_path):
    out, _ = evaluated
    rows = read_jsonl(out / "predictions.jsonl")
    for row in rows:
        row["output"] = row["reference"]
    done = run("--score-only", write_lines(tmp_path / "perfect.jsonl", rows), "--out", tmp_path / "perfect")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "perfect" / "metrics.json").read_text())
    assert metrics["rouge_l"] == pytest.approx(1.0) and metrics["chrf"] == pytest.approx(100.0)
    assert metrics["bleu4"] == pytest.approx(100.0)
    assert all(g["rouge_l"] == pytest.approx(1.0) for g in metrics["per_intent"].values())

    rows[0]["ref_nll"] = rows[0]["ref_tokens"] = None
    done = run("--score-only", write_lines(tmp_path / "partial.jsonl", rows), "--out", tmp_path / "partial")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "partial" / "metrics.json").read_text())
    assert metrics["perplexity"] is None and "perplexity" in metrics["unavailable"]
    table = run("--compare", tmp_path / "perfect" / "metrics.json", tmp_path / "partial" / "metrics.json",
                "--names", "a", "b")
    assert "| Metric | a | b |" in table.stdout


def test_resume_generates_only_missing_rows(evaluated, tiny_model, tmp_path):
    out, _ = evaluated
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    kept = (copy / "predictions.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:9]
    (copy / "predictions.jsonl").write_text("".join(kept), encoding="utf-8")
    done = run("--model", tiny_model("gemma3"), "--data", TEST_ROWS, "--out", copy, "--max-new-tokens", 3,
               "--no-perplexity")
    assert done.returncode == 0, done.stderr
    assert "9 already in" in done.stdout and "3 to generate" in done.stdout
    after = (copy / "predictions.jsonl").read_text(encoding="utf-8")
    assert after.startswith("".join(kept)) and len(after.splitlines()) == 12
    # the three new rows skipped the NLL pass, so no partial perplexity is reported
    assert json.loads((copy / "metrics.json").read_text())["perplexity"] is None


def test_bad_rows_name_file_line_and_field(tmp_path, tiny_model):
    good = TEST_ROWS.read_text(encoding="utf-8").splitlines()[0]
    row = json.loads(good)
    del row["intent"]
    data = tmp_path / "test.jsonl"
    data.write_text(good + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    done = run("--model", tiny_model("gemma3"), "--data", data, "--out", tmp_path / "o")
    assert done.returncode == 2
    assert f"{data}:2: field 'intent'" in done.stderr
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_bad_nll_fields_are_refused(evaluated, tmp_path):
    out, _ = evaluated
    rows = read_jsonl(out / "predictions.jsonl")
    rows[2]["ref_tokens"] = None
    done = run("--score-only", write_lines(tmp_path / "p.jsonl", rows), "--out", tmp_path / "o")
    assert done.returncode == 2
    assert "'ref_nll'/'ref_tokens'" in done.stderr and rows[2]["id"] in done.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()
