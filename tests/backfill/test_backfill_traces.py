"""The backfill reply checks on hand-written replies: each malformation is named, and only it."""

from __future__ import annotations

import pytest

from recipekit.backfill.traces import check_trace, mentions_answer, solution_blocks

SOLUTION = "def double():\n    return 36 * 2"
GOOD = "<|thinking_start|>\nDoubling 36 is asked; 36 * 2 is returned: consistent.\n<|thinking_end|>"
CHANGED = "<|solution_start|>\ndef double():\n    return 72\n<|solution_end|>"


def test_good_reply_is_well_formed_and_gives_the_reasoning():
    check = check_trace(GOOD, SOLUTION, stopped=True)
    assert check.well_formed and check.problems == () and check.reason is None
    assert check.thinking == "Doubling 36 is asked; 36 * 2 is returned: consistent."
    assert not check.solution_changed
    # surrounding whitespace (the newline after the assistant header, before end-of-turn) is allowed
    assert check_trace(f"\n{GOOD}\n", SOLUTION, stopped=True).well_formed


@pytest.mark.parametrize("reply, stopped, problems", [
    (GOOD + "\n" + GOOD, True, ("multiple_blocks",)),
    ("<|thinking_end|>\nreasoning\n<|thinking_start|>", True, ("reversed_order",)),
    (GOOD + "\nSo the answer is 72.", True, ("text_after_block",)),
    ("Sure! " + GOOD, True, ("text_before_block",)),
    ("<|thinking_start|>\nDoubling 36 is asked and", True, ("missing_end",)),
    ("<|thinking_start|>\nDoubling 36 is asked and", False, ("no_end_of_turn", "missing_end")),
    (GOOD, False, ("no_end_of_turn",)),
    ("Doubling 36 is asked.\n<|thinking_end|>", True, ("missing_start",)),
    ("just an answer", True, ("missing_start",)),
    ("", True, ("missing_start",)),
    ("<|thinking_start|>\n \n<|thinking_end|>", True, ("empty_thinking",)),
    ("<|thinking_start|>\nstep <|instruction_end|> step\n<|thinking_end|>", True, ("sentinel_in_thinking",)),
])
def test_malformed_replies_name_their_problems(reply, stopped, problems):
    check = check_trace(reply, SOLUTION, stopped)
    assert check.problems == problems
    assert not check.well_formed and check.reason == problems[0] and check.thinking is None
    assert not check.solution_changed


@pytest.mark.parametrize("reply, changed, problem", [
    (GOOD + "\n" + CHANGED, True, "text_after_block"),
    (GOOD + f"\n<|solution_start|>\n{SOLUTION}\n<|solution_end|>", False, "text_after_block"),
    (f"<|thinking_start|>\nfirst {CHANGED} then\n<|thinking_end|>", True, "sentinel_in_thinking"),
    (GOOD + "\n<|solution_start|>\ndef double():", True, "text_after_block"),  # never closed
])
def test_solution_blocks_are_compared_with_the_given_solution(reply, changed, problem):
    check = check_trace(reply, SOLUTION, stopped=True)
    assert check.solution_changed is changed
    assert check.reason == problem  # any solution block also breaks the layout


def test_solution_blocks_split_on_the_sentinels():
    assert solution_blocks("a<|solution_start|>x<|solution_end|>b<|solution_start|>y") == ["x", "y"]
    assert solution_blocks(GOOD) == []


def test_mentions_answer_only_judges_one_number_solutions():
    assert mentions_answer("17 + 39 = 56, as given.", "56") is True
    assert mentions_answer("38 x 38 = 1,444.", "1444") is True
    assert mentions_answer("17 + 39 = 57.", "56") is False
    assert mentions_answer("It returns 36 * 2.", SOLUTION) is None
