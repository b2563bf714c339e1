"""Is a backfiller's reply one clean reasoning block, and does it leave the solution alone?

What is checked is the assistant reply exactly as generated: the text after the prompt,
decoded with special tokens kept, up to (not including) the end-of-turn token, plus the
flag saying whether an end-of-turn token ended it. The prompt prefills nothing: it stops
where the training text's assistant turn begins ("<|im_start|>assistant\\n"), and training
taught the model to open that turn with <|thinking_start|> itself, so the start sentinel
must be in the generated text.

Well formed means all of:
  - the reply ended on the end-of-turn token (not on the token budget);
  - exactly one <|thinking_start|> and one <|thinking_end|>, the start first;
  - only whitespace before the start and after the end sentinel;
  - non-blank reasoning between them, holding no other sentinel (prep_backfill.py would
    refuse such a trace, and a solution block inside the reasoning is a rewrite).

Solution preserved means the reply holds no <|solution_start|> block whose text differs
from the given solution (both stripped of surrounding whitespace; a block the model never
closes runs to the next solution sentinel or the end of the reply). Its limit: only an
explicit solution block is caught. Reasoning that argues for another answer in plain words
is not; `mentions_answer` gives a weak second signal for solutions that are one number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from recipekit.templates.special_tokens import backfill_sentinels, sentinel_pair

THINK_START, THINK_END = sentinel_pair("thinking")
SOLUTION_START, SOLUTION_END = sentinel_pair("solution")
# In the order they are checked; the first one found is a reply's reason for rejection.
PROBLEMS = (
    "no_end_of_turn",
    "missing_start",
    "missing_end",
    "multiple_blocks",
    "reversed_order",
    "text_before_block",
    "text_after_block",
    "empty_thinking",
    "sentinel_in_thinking",
)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class TraceCheck:
    problems: tuple[str, ...]  # well-formedness failures, in PROBLEMS order; empty when well formed
    thinking: str | None  # the reasoning between the sentinels, stripped, when well formed
    solution_changed: bool

    @property
    def well_formed(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str | None:
        return self.problems[0] if self.problems else None


def _structure_problems(reply: str) -> list[str]:
    starts, ends = reply.count(THINK_START), reply.count(THINK_END)
    if not starts:
        return ["missing_start"] + (["multiple_blocks"] if ends > 1 else [])
    if not ends:
        return ["missing_end"] + (["multiple_blocks"] if starts > 1 else [])
    if starts > 1 or ends > 1:
        return ["multiple_blocks"]
    first, last = reply.index(THINK_START), reply.index(THINK_END)
    if last < first:
        return ["reversed_order"]
    problems = []
    if reply[:first].strip():
        problems.append("text_before_block")
    if reply[last + len(THINK_END):].strip():
        problems.append("text_after_block")
    inner = reply[first + len(THINK_START):last]
    if not inner.strip():
        problems.append("empty_thinking")
    elif any(s in inner for s in backfill_sentinels()):
        problems.append("sentinel_in_thinking")
    return problems


def solution_blocks(reply: str) -> list[str]:
    """The text of every solution block in `reply`; an unclosed one runs to the next start or the end."""
    blocks = []
    for piece in reply.split(SOLUTION_START)[1:]:
        blocks.append(piece.split(SOLUTION_END, 1)[0])
    return blocks


def check_trace(reply: str, solution: str, stopped: bool) -> TraceCheck:
    problems = ([] if stopped else ["no_end_of_turn"]) + _structure_problems(reply)
    changed = any(block.strip() != solution.strip() for block in solution_blocks(reply))
    thinking = None
    if not problems:
        thinking = reply[reply.index(THINK_START) + len(THINK_START):reply.index(THINK_END)].strip()
    return TraceCheck(tuple(problems), thinking, changed)


def _as_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def numeric_solution(solution: str) -> Decimal | None:
    """The value of a solution that is one number (commas allowed), else None."""
    stripped = solution.strip()
    return _as_number(stripped) if _NUMBER.fullmatch(stripped) else None


def mentions_answer(thinking: str, solution: str) -> bool | None:
    """For a one-number solution: does the reasoning state that number anywhere? None otherwise.

    Weak by design: it shows the reasoning reaches the answer, not that it never asserts another.
    """
    target = numeric_solution(solution)
    if target is None:
        return None
    return any(_as_number(m) == target for m in _NUMBER.findall(thinking))
