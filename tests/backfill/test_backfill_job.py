"""The backfill job: exact kept rows and rejects with a scripted generator, then end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
from helpers import StandInGeneratorBase, read_jsonl, run_script
from transformers import AutoTokenizer

from recipekit.backfill.job import CARD_SAMPLING, run_backfill
from recipekit.backfill.prep import main as prep_backfill
from recipekit.backfill.traces import check_trace
from recipekit.dataio.rows import RowError
from recipekit.generation.engine import Generated
from recipekit.paths import REPO_ROOT
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "dataset_prep" / "backfill_traces.py"
LEGACY = FIXTURES_DIR / "raw" / "backfill_legacy.jsonl"
LEGACY_PROMPTS = FIXTURES_DIR / "prepared" / "backfill_legacy_prompts.jsonl"
# instruction -> (reply, stopped): two good ones, then one of each kind of failure
SCRIPT_REPLIES = {
    "Add 19 and 12.": ("<|thinking_start|>\nA sum: 19 + 12 = 31, as given.\n<|thinking_end|>", True),
    "What is 38 times 38?": ("\n<|thinking_start|>\n38 x 38 = 1444.\n<|thinking_end|>\n", True),
    "Write a Python function that doubles 22.": (
        "<|thinking_start|>\nDouble it.\n<|thinking_end|>\n<|solution_start|>\nreturn 44\n<|solution_end|>", True),
    "Add 8 and 15.": ("<|thinking_start|>\n8 + 15 = 23 and then", False),
    "Write a Python function that doubles 38.": ("<|thinking_end|>\nback to front\n<|thinking_start|>", True),
    "What is 20 times 9?": ("<|thinking_start|>\na\n<|thinking_end|><|thinking_start|>\nb\n<|thinking_end|>", True),
}


class ScriptedGenerator(StandInGeneratorBase):
    """Stands in for a model: answers each prompt from SCRIPT_REPLIES by the instruction it holds."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prompts: list[str] = []
        self.sampling = None

    def generate(self, prompts, sampling, on_done=None, desc=""):
        self.sampling = sampling
        results = []
        for index, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            instruction = next(k for k in SCRIPT_REPLIES if f"<|instruction_start|>\n{k}\n" in prompt)
            text, stopped = SCRIPT_REPLIES[instruction]
            results.append(Generated(text, len(self.tokenizer.encode(text)), stopped))
            if on_done:
                on_done(index, results[-1])
        return results


@pytest.fixture()
def scripted(tiny_model):
    return ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model("qwen3_backfill")))


def test_scripted_replies_give_exact_kept_rows_and_rejects(scripted, tmp_path):
    out = tmp_path / "run"
    summary = run_backfill(LEGACY, out, lambda log_dir: scripted)
    kept = read_jsonl(out / "backfilled.jsonl")
    assert kept == [
        {"id": "legacy-30", "instruction": "Add 19 and 12.", "thinking": "A sum: 19 + 12 = 31, as given.",
         "solution": "31"},
        {"id": "legacy-32", "instruction": "What is 38 times 38?", "thinking": "38 x 38 = 1444.", "solution": "1444"},
    ]
    rejects = read_jsonl(out / "rejects.jsonl")
    assert [(r["id"], r["reason"], r["solution_changed"]) for r in rejects] == [
        ("legacy-31", "text_after_block", True),
        ("legacy-33", "no_end_of_turn", False),
        ("legacy-34", "reversed_order", False),
        ("legacy-35", "multiple_blocks", False),
    ]
    assert rejects[1]["problems"] == ["no_end_of_turn", "missing_end"]
    assert summary.rows_in == 6 and summary.kept == 2 and summary.generated == 6 and summary.reused == 0
    assert dict(summary.rejected) == {"text_after_block": 1, "no_end_of_turn": 1, "reversed_order": 1,
                                      "multiple_blocks": 1}
    # the card's sampling, and prompts that end where the assistant turn begins, nothing prefilled
    assert scripted.sampling == CARD_SAMPLING and CARD_SAMPLING.min_p == 0.05
    assert all(p.endswith("<|im_start|>assistant\n") for p in scripted.prompts)


def test_kept_rows_feed_back_into_prep_backfill(scripted, tmp_path):
    run_backfill(LEGACY, tmp_path / "run", lambda log_dir: scripted)
    train = tmp_path / "train.jsonl"
    assert prep_backfill(["--input", str(tmp_path / "run" / "backfilled.jsonl"), "--output", str(train)]) == 0
    rows = read_jsonl(train)
    assert len(rows) == 2
    trace = "<|thinking_start|>\nA sum: 19 + 12 = 31, as given.\n<|thinking_end|>"
    assert rows[0]["conversations"][-1]["value"] == trace


def test_rerun_reuses_replies_and_never_calls_the_model(scripted, tmp_path):
    out = tmp_path / "run"
    run_backfill(LEGACY, out, lambda log_dir: scripted)
    before = (out / "backfilled.jsonl").read_text(encoding="utf-8")

    def no_model(log_dir):
        raise AssertionError("every row already has a reply")

    summary = run_backfill(LEGACY, out, no_model)
    assert summary.reused == 6 and summary.generated == 0
    assert (out / "backfilled.jsonl").read_text(encoding="utf-8") == before


def test_prepared_inference_rows_use_their_own_prompt(scripted, tmp_path):
    summary = run_backfill(LEGACY_PROMPTS, tmp_path / "run", lambda log_dir: scripted, system="another system prompt")
    assert summary.kept == 2
    assert all("another system prompt" not in p for p in scripted.prompts)


def test_bad_input_row_stops_the_run_and_writes_nothing(scripted, tmp_path):
    data = tmp_path / "legacy.jsonl"
    data.write_text(LEGACY.read_text(encoding="utf-8") + '{"id": "x", "instruction": "Add 1 and 2."}\n',
                    encoding="utf-8")
    with pytest.raises(RowError, match=rf"{data}:7: field 'solution': missing"):
        run_backfill(data, tmp_path / "run", lambda log_dir: scripted)
    assert not (tmp_path / "run").exists() and scripted.prompts == []


def test_skip_invalid_sends_bad_rows_to_rejects(scripted, tmp_path):
    data = tmp_path / "legacy.jsonl"
    data.write_text(LEGACY.read_text(encoding="utf-8") + '{"id": "x", "instruction": "Add 1 and 2."}\nnot json\n',
                    encoding="utf-8")
    summary = run_backfill(data, tmp_path / "run", lambda log_dir: scripted, skip_invalid=True)
    invalid = [r for r in read_jsonl(tmp_path / "run" / "rejects.jsonl") if r["reason"] == "invalid_input"]
    assert [(r["line"], r["field"]) for r in invalid] == [(7, "solution"), (8, "<json>")]
    assert summary.rejected["invalid_input"] == 2 and summary.kept == 2


def run_cli(*args):
    return run_script(SCRIPT, *args)

def test_cli_end_to_end_on_the_tiny_backfiller(tiny_model, tmp_path):
    out = tmp_path / "run"
    done = run_cli("--model", tiny_model("qwen3_backfill"), "--input", LEGACY, "--out", out,
                   "--max-new-tokens", 12, "--batch-size", 3)
    assert done.returncode == 0, done.stderr
    generations = read_jsonl(out / "generations.jsonl")
    assert sorted(g["id"] for g in generations) == [f"legacy-{i}" for i in range(30, 36)]
    kept, rejects = read_jsonl(out / "backfilled.jsonl"), read_jsonl(out / "rejects.jsonl")
    expected_kept = {g["id"] for g in generations if check_trace(g["output"], g["solution"], g["stopped"]).well_formed}
    assert {r["id"] for r in kept} == expected_kept and len(kept) + len(rejects) == 6
    assert "rows in: 6" in done.stdout and f"kept: {len(kept)}" in done.stdout
    assert f"rejected: {len(rejects)}" in done.stdout
    assert json.loads((out / "manifest.json").read_text())["seed"] == 42

    again = run_cli("--input", LEGACY, "--out", out)  # resumes without a model: nothing left to generate
    assert again.returncode == 0, again.stderr
    assert "replies generated now: 0, reused: 6" in again.stdout


def test_cli_bad_input_exits_2_naming_file_line_and_field(tiny_model, tmp_path):
    data = tmp_path / "legacy.jsonl"
    data.write_text('{"instruction": "q", "solution": "a"}\n{"instruction": "q2", "solution": 5}\n', encoding="utf-8")
    done = run_cli("--model", tiny_model("qwen3_backfill"), "--input", data, "--out", tmp_path / "run")
    assert done.returncode == 2
    assert f"{data}:2: field 'solution': must be a string" in done.stderr
    assert not (tmp_path / "run").exists()
