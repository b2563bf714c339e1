"""SPPO pairs: the win-rate math by hand, and the `dataset_prep/sppo_pairs.py` command."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from helpers import read_jsonl, write_jsonl

from recipekit.dataio.rows import FieldError
from recipekit.paths import REPO_ROOT
from recipekit.sppo.pairs import build_pair, main, preference_matrix, win_probability

LN3 = math.log(3.0)


def test_win_probability_by_hand():
    # s_i - s_j = ln 3  ->  1 / (1 + 1/3) = 3/4
    assert win_probability(LN3, 0.0) == pytest.approx(0.75)
    assert win_probability(0.0, LN3) == pytest.approx(0.25)
    assert win_probability(2.0, 2.0) == 0.5
    # far-apart scores must not overflow
    assert win_probability(-1000.0, 1000.0) == 0.0
    assert win_probability(1000.0, -1000.0) == 1.0


def test_preference_matrix_by_hand():
    matrix = preference_matrix([0.0, LN3, -LN3])
    expected = [[0.5, 0.25, 0.75], [0.75, 0.5, 0.9], [0.25, 0.1, 0.5]]
    for row, expected_row in zip(matrix, expected):
        assert row == pytest.approx(expected_row)


def test_build_pair_by_hand():
    row = {"prompt": "Name a colour.", "responses": ["grey", "blue", "potato"], "scores": [0.0, LN3, -LN3]}
    pair = build_pair(row)
    assert pair["chosen"] == [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "blue"},
    ]
    assert pair["rejected"][1] == {"role": "assistant", "content": "potato"}
    assert pair["rejected"][0] == pair["chosen"][0]
    assert pair["chosen_probs"] == pytest.approx(0.9)  # P[best][worst]
    assert pair["chosen_probs_win"] == pytest.approx((0.75 + 0.5 + 0.9) / 3)  # self-term 0.5 included
    assert pair["chosen_probs_lose"] == pytest.approx((0.25 + 0.1 + 0.5) / 3)


def test_build_pair_takes_first_of_tied_best():
    pair = build_pair({"prompt": "p", "responses": ["a", "b", "c"], "scores": [2, 2, 1]})
    assert pair["chosen"][1]["content"] == "a"
    assert pair["rejected"][1]["content"] == "c"


@pytest.mark.parametrize(
    "row, field",
    [
        ({"prompt": "p", "responses": ["a", "b"], "scores": [1.0, 1.0]}, "scores"),
        ({"prompt": "p", "responses": ["a"], "scores": [1.0]}, "responses"),
        ({"prompt": "p", "responses": ["a", "b"], "scores": [1.0]}, "scores"),
        ({"prompt": "p", "responses": ["a", "b"], "scores": [1.0, float("nan")]}, "scores[1]"),
        ({"prompt": "p", "responses": ["a", "b"], "scores": [True, 0.0]}, "scores[0]"),
        ({"prompt": "p", "responses": ["a", 3], "scores": [1.0, 0.0]}, "responses[1]"),
        ({"prompt": " ", "responses": ["a", "b"], "scores": [1.0, 0.0]}, "prompt"),
        ({"prompt": "p", "responses": ["same", "same"], "scores": [1.0, 0.0]}, "responses"),
        ({"responses": ["a", "b"], "scores": [1.0, 0.0]}, "prompt"),
    ],
)
def test_build_pair_rejects_unusable_rows(row, field):
    with pytest.raises(FieldError) as caught:
        build_pair(row)
    assert caught.value.field == field


# --- the command -------------------------------------------------------------------------

GOOD = {"prompt": "Name a colour.", "responses": ["grey", "blue", "potato"], "scores": [0.0, LN3, -LN3]}
TIED = {"prompt": "Say hi.", "responses": ["hi", "hello"], "scores": [0.5, 0.5]}


def test_command_writes_pairs(tmp_path):
    source, output = tmp_path / "scored.jsonl", tmp_path / "out" / "pairs.jsonl"
    write_jsonl(source, [GOOD, {**GOOD, "prompt": "Another colour?"}])
    command = [sys.executable, str(REPO_ROOT / "dataset_prep" / "sppo_pairs.py"), "--input", str(source)]
    done = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rows out: 2" in done.stdout
    rows = read_jsonl(output)
    assert [r["chosen"][0]["content"] for r in rows] == ["Name a colour.", "Another colour?"]
    assert rows[0] == build_pair(GOOD)
    assert set(rows[0]) == {"chosen", "rejected", "chosen_probs", "chosen_probs_win", "chosen_probs_lose"}


def test_bad_row_stops_with_file_line_field_and_writes_nothing(tmp_path, capsys):
    source, output = tmp_path / "scored.jsonl", tmp_path / "pairs.jsonl"
    write_jsonl(source, [GOOD, TIED])
    assert main(["--input", str(source), "--output", str(output)]) == 2
    assert f"{source}:2: field 'scores': all scores are equal" in capsys.readouterr().err
    assert not output.exists()


def test_skip_invalid_counts_and_keeps_rejects(tmp_path, capsys):
    source, output, rejects = tmp_path / "scored.jsonl", tmp_path / "pairs.jsonl", tmp_path / "rejects.jsonl"
    write_jsonl(source, [GOOD, TIED, {**GOOD, "responses": ["only one"], "scores": [1.0]}])
    assert main(["--input", str(source), "--output", str(output), "--skip-invalid", "--rejects", str(rejects)]) == 0
    assert "rejected: 2" in capsys.readouterr().out
    assert len(read_jsonl(output)) == 1
    reasons = [(r["line"], r["field"], r["reason"]) for r in read_jsonl(rejects)]
    assert reasons == [
        (2, "scores", "all scores are equal, so there is no preference to learn"),
        (3, "responses", "needs at least 2 responses to form a pair, got 1"),
    ]


def test_empty_input_is_an_error(tmp_path, capsys):
    source, output = tmp_path / "scored.jsonl", tmp_path / "pairs.jsonl"
    source.write_text("", encoding="utf-8")
    assert main(["--input", str(source), "--output", str(output)]) == 2
    assert "input has no rows" in capsys.readouterr().err
    assert not output.exists()


def test_pair_texts_are_trimmed_as_chat_templates_trim_them():
    from recipekit.sppo.pairs import build_pair

    pair = build_pair({"prompt": " q \n", "responses": ["  good\n", "bad  "], "scores": [1.0, 0.0]})
    assert pair["chosen"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}]
    assert pair["rejected"][1]["content"] == "bad"
