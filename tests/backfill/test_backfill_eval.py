"""eval/run_backfill_eval.py: generate with the tiny backfiller, resume, score known replies, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import read_jsonl, run_script

from recipekit.paths import REPO_ROOT
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "eval" / "run_backfill_eval.py"
HELD_OUT = FIXTURES_DIR / "prepared" / "backfill_legacy_prompts.jsonl"
GOOD = "<|thinking_start|>\n19 + 12 = 31, as given.\n<|thinking_end|>"


def run(*args):
    return run_script(SCRIPT, *args)

@pytest.fixture(scope="module")
def evaluated(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    done = run("--model", tiny_model("qwen3_backfill"), "--data", HELD_OUT, "--out", out,
               "--max-new-tokens", 8, "--batch-size", 2, "--limit", 4)
    assert done.returncode == 0, done.stderr
    return out, done


def test_generation_writes_predictions_and_every_report(evaluated):
    out, done = evaluated
    rows = read_jsonl(out / "predictions.jsonl")
    gold = read_jsonl(HELD_OUT)[:4]
    # prepared rows carry no id: each gets a hash of its pair, so resuming matches it again
    assert len({r["id"] for r in rows}) == 4
    by_instruction = {g["instruction"]: g for g in gold}
    assert sorted(r["instruction"] for r in rows) == sorted(by_instruction)
    for row in rows:
        assert row["solution"] == by_instruction[row["instruction"]]["solution"]
        assert isinstance(row["output"], str) and 0 <= row["new_tokens"] <= 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4
    checks = read_jsonl(out / "checks.jsonl")
    assert metrics["well_formed"] == sum(c["well_formed"] for c in checks)
    assert metrics["budget_reached"] == sum(not r["stopped"] for r in rows)
    assert metrics["generated_tokens"]["max"] == max(r["new_tokens"] for r in rows)
    assert (out / "metrics.md").read_text().startswith("| Metric |")
    assert (out / "trace_lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "manifest.json").read_text())["inputs"]
    assert "Well-formed rate" in done.stdout


def test_resume_generates_only_missing_rows(evaluated, tiny_model, tmp_path):
    out, _ = evaluated
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    before = (copy / "predictions.jsonl").read_text(encoding="utf-8")
    done = run("--model", tiny_model("qwen3_backfill"), "--data", HELD_OUT, "--out", copy, "--max-new-tokens", 8)
    assert done.returncode == 0, done.stderr
    assert "4 already in" in done.stdout and "2 to generate" in done.stdout
    after = (copy / "predictions.jsonl").read_text(encoding="utf-8")
    assert after.startswith(before) and len(after.splitlines()) == 6


def write_predictions(path, replies):
    rows = [{"id": f"r{i}", "solution": solution, "output": output, "new_tokens": tokens, "stopped": stopped}
            for i, (solution, output, tokens, stopped) in enumerate(replies)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_only_counts_known_replies_exactly(tmp_path):
    predictions = write_predictions(tmp_path / "p.jsonl", [
        ("31", GOOD, 14, True),
        ("31", "<|thinking_start|>\n19 + 12 = 30.\n<|thinking_end|>", 10, True),
        ("31", GOOD + GOOD, 28, True),
        ("31", GOOD + "\n<|solution_start|>\n30\n<|solution_end|>", 20, True),
        ("31", "<|thinking_start|>\n19 + 12", 40, False),
    ])
    done = run("--score-only", predictions, "--out", tmp_path / "scored")
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert m["n"] == 5 and m["well_formed"] == 2 and m["well_formed_rate"] == pytest.approx(0.4)
    assert m["solution_changed"] == 1 and m["solution_preserved_rate"] == pytest.approx(0.8)
    assert m["malformed_by_reason"] == {"multiple_blocks": 1, "text_after_block": 1, "no_end_of_turn": 1}
    assert m["rows_with_problem"]["missing_end"] == 1 and m["budget_reached"] == 1
    assert m["answer_checked"] == 2 and m["answer_mentioned_rate"] == pytest.approx(0.5)
    assert m["trace_tokens"] == {"n": 2, "mean": 12.0, "median": 12.0, "p90": 14, "max": 14}
    assert m["generated_tokens"]["max"] == 40
    table = (tmp_path / "scored" / "metrics.md").read_text()
    assert "| Well-formed rate | 40.00 % |" in table and "| multiple_blocks | 1 |" in table

    compared = run("--compare", tmp_path / "scored" / "metrics.json", tmp_path / "scored" / "metrics.json",
                   "--names", "a", "b")
    assert compared.returncode == 0 and "| Solution-preserved rate | 80.00 % | 80.00 % |" in compared.stdout


def test_malformed_prediction_field_is_named(tmp_path):
    predictions = write_predictions(tmp_path / "p.jsonl", [("31", GOOD, 14, "yes")])
    done = run("--score-only", predictions, "--out", tmp_path / "scored")
    assert done.returncode == 2
    assert f"{predictions}: row id 'r0': field 'stopped'" in done.stderr
    assert not (tmp_path / "scored" / "metrics.json").exists()


def test_bad_held_out_row_names_file_line_and_field(tmp_path, tiny_model):
    data = tmp_path / "test.jsonl"
    data.write_text('{"instruction": "q", "solution": "a"}\n{"instruction": "q <|solution_end|>", "solution": "a"}\n',
                    encoding="utf-8")
    done = run("--model", tiny_model("qwen3_backfill"), "--data", data, "--out", tmp_path / "o")
    assert done.returncode == 2
    assert f"{data}:2: field 'instruction': already contains sentinel" in done.stderr
    assert not (tmp_path / "o").exists()
