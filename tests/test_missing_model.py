"""A model or tokenizer path that does not exist: every command says so in one line and exits 2."""

from __future__ import annotations

import pytest
from helpers import run_module, run_script
from huggingface_hub import constants

from recipekit.checkpoints.model_path import ModelNotFoundError, resolve_model_path
from recipekit.cli import EXIT_USER_ERROR
from recipekit.paths import REPO_ROOT
from recipekit.testing import FIXTURES_DIR

TYPO = "outputs/typo"  # shaped like a hub name (owner/name), so offline it must also miss the hub cache
RAW = FIXTURES_DIR / "raw"
PREPARED = FIXTURES_DIR / "prepared"

# (command, its arguments with TYPO where a model or tokenizer goes); OUT is replaced by a fresh path.
COMMANDS = {
    "backfill_traces": (["dataset_prep/backfill_traces.py"],
                        ["--model", TYPO, "--input", RAW / "backfill_legacy.jsonl", "--out", "OUT"]),
    "judge_preferences": (["dataset_prep/judge_preferences.py"],
                          ["--judge", TYPO, "--input", RAW / "arena_ja.jsonl", "--output", "OUT"]),
    "prep_backfill": (["dataset_prep/prep_backfill.py"],
                      ["--tokenizer", TYPO, "--input", RAW / "backfill_traces.jsonl", "--output", "OUT"]),
    "prep_bitext": (["dataset_prep/prep_bitext.py"],
                    ["--tokenizer", TYPO, "--input", RAW / "bitext.csv", "--output", "OUT"]),
    "prep_cs_pairs": (["dataset_prep/prep_cs_pairs.py"],
                      ["--tokenizer", TYPO, "--input", RAW / "cs_pairs.jsonl", "--output", "OUT"]),
    "prep_preference": (["dataset_prep/prep_preference.py"],
                        ["--tokenizer", TYPO, "--input", RAW / "helpsteer3_ja.jsonl", "--output", "OUT"]),
    "prep_sppo_prompts": (["dataset_prep/prep_sppo_prompts.py"],
                          ["--tokenizer", TYPO, "--input", RAW / "ultrafeedback_prompts.jsonl", "--output", "OUT"]),
    "prep_supervisor": (["dataset_prep/prep_supervisor.py"],
                        ["--tokenizer", TYPO, "--input", RAW / "supervisor_judged.jsonl", "--output", "OUT"]),
    "sppo_pairs": (["dataset_prep/sppo_pairs.py"],
                   ["--tokenizer", TYPO, "--input", RAW / "sppo_scored.jsonl", "--output", "OUT"]),
    "run_backfill_eval": (["eval/run_backfill_eval.py"],
                          ["--model", TYPO, "--data", PREPARED / "backfill_train.jsonl", "--out", "OUT"]),
    "run_chatbot_eval": (["eval/run_chatbot_eval.py"],
                         ["--model", TYPO, "--data", PREPARED / "cs_chatbot_test.jsonl", "--out", "OUT"]),
    "run_reward_eval": (["eval/run_reward_eval.py"],
                        ["--model", TYPO, "--data", PREPARED / "reward_ja_eval.jsonl", "--out", "OUT"]),
    "run_sppo_eval": (["eval/run_sppo_eval.py"],
                      ["--model", TYPO, "--data", RAW / "alpaca_eval_instructions.json", "--out", "OUT"]),
    "run_supervisor_eval": (["eval/run_supervisor_eval.py"],
                            ["--model", TYPO, "--data", PREPARED / "supervisor_stage2_test.jsonl", "--out", "OUT"]),
    "run_supervisor_eval --sbert-model": (["eval/run_supervisor_eval.py"],
                                          ["--score-only", "OUT", "--out", "OUT", "--sbert-model", TYPO]),
    "merge_lora --base": (["merge/merge_lora.py"], ["--base", TYPO, "--adapter", "OUT", "--out", "OUT"]),
    "merge_lora --adapter": (["merge/merge_lora.py"], ["--base", REPO_ROOT, "--adapter", TYPO, "--out", "OUT"]),
    "quantize_4bit": (["merge/quantize_4bit.py"], ["--model", TYPO, "--out", "OUT"]),
    "sppo driver": (["-m", "recipekit.sppo.driver"],
                    ["--prompts", PREPARED / "sppo_prompts_iter1.jsonl", "--out", "OUT", "--start-model", TYPO]),
    "show_trained_tokens": (["-m", "recipekit.training.show_trained_tokens"],
                            ["--config", REPO_ROOT / "recipes" / "supervisor_stage1.yml", "--data", PREPARED / "supervisor_stage1.jsonl",
                             "--tokenizer", TYPO]),
    "model_card": (["-m", "recipekit.reporting.model_card"], ["--model", TYPO]),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_model_is_one_line_and_exit_2(name, tmp_path):
    command, args = COMMANDS[name]
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else str(a) for a in args]
    # Run from an empty folder: TYPO is relative and must not exist there.
    if command[0] == "-m":
        done = run_module(command[1], *argv, cwd=tmp_path)
    else:
        done = run_script(REPO_ROOT / command[0], *argv, cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and TYPO in lines[0]
    assert not out.exists(), "nothing is written for a run that cannot start"


def test_a_name_that_is_no_hub_name_fails_online_too(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online
    with pytest.raises(ModelNotFoundError, match=r"^--model outputs/run/merged: no such directory$"):
        resolve_model_path("outputs/run/merged", "--model")


def test_online_a_hub_name_is_left_to_the_hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online
    assert resolve_model_path(TYPO) == TYPO


def test_offline_a_hub_name_in_the_local_cache_loads(monkeypatch, tmp_path):
    repo = tmp_path / "models--owner--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_path("owner/cached") == "owner/cached"
    with pytest.raises(ModelNotFoundError, match="owner/absent: no such directory, and not a hub model"):
        resolve_model_path("owner/absent")


def test_an_existing_directory_is_used_as_is(tmp_path):
    assert resolve_model_path(tmp_path) == str(tmp_path)
