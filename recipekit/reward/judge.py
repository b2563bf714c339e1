"""Pseudo-preference labels: a judge model compares candidate responses, in both orders.

Input rows are {"prompt", "responses": [two or more strings], "id"?}. Every pair of
distinct candidates of a prompt is shown to the judge twice, once in each order. A pair
is kept only when both verdicts name the same response; it is then written as a
Bradley-Terry training row in the prep_preference.py shape {system, input, chosen,
rejected}. Pairs whose verdict follows the position instead of the response
(inconsistent) and pairs with an unparseable verdict go to --rejects with the reason
and the judge's raw replies, and are counted in the summary.

    python dataset_prep/judge_preferences.py --input candidates.jsonl --judge JUDGE_MODEL \\
        --output data/reward_ja/train.jsonl --rejects data/reward_ja/judge_rejects.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.jsonl import write_jsonl
from recipekit.dataio.prep_runner import Drop, Stats, base_parser, chunks, finish, stream
from recipekit.dataio.rows import PrepError
from recipekit.errors import RecipekitError
from recipekit.generation.engine import Sampling
from recipekit.generation.eval_runner import add_backend_args, open_generator
from recipekit.templates.chat_format import inference_prompt
from recipekit.templates.shapes import messages_of
from recipekit.templates.special_tokens import strip_special_tokens

JUDGE_INSTRUCTIONS = """You compare two answers to the same request and decide which one serves the person better.
Weigh, in this order: whether it actually does what was asked, whether it is correct, whether it is clear and \
appropriately detailed, and whether it is written in the language of the request. Length alone is no merit, and \
the order in which the answers are shown means nothing.

[Request]
{prompt}

[Answer A]
{first}

[Answer B]
{second}

You may think briefly first. Then end your reply with one last line that is exactly "Verdict: A" or \
"Verdict: B", and nothing after it."""

_VERDICT_LINE = re.compile(r"Verdict: ([AB])")
PROMPTS_PER_ROUND = 512  # prompts read, judged and written per round, so memory does not grow with the input


class VerdictError(RecipekitError, ValueError):
    """A judge reply that does not end with a single well-formed verdict line."""


def parse_verdict(reply: str) -> str:
    """'A' or 'B' from the judge's reply; anything but one exact final verdict line is an error."""
    text = strip_special_tokens(reply).strip()
    if not text:
        raise VerdictError("empty reply")
    last = text.splitlines()[-1].strip()
    match = _VERDICT_LINE.fullmatch(last)
    if not match:
        raise VerdictError(f"last line is not 'Verdict: A' or 'Verdict: B': {last[:80]!r}")
    if text.count("Verdict:") != 1:
        raise VerdictError("more than one 'Verdict:' line")
    return match.group(1)


# judge(list of (prompt, first, second)) -> raw replies, in order
Judge = Callable[[Sequence[tuple[str, str, str]]], list[str]]


@dataclass
class JudgeOutcome:
    rows: list[dict[str, str]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    pairs: int = 0
    inconsistent: int = 0
    parse_failures: int = 0  # pairs with at least one unparseable reply
    unparsed_replies: int = 0


def candidate_pairs(item: dict[str, Any]) -> list[tuple[str, str]]:
    return list(itertools.combinations(item["responses"], 2))


@dataclass(frozen=True)
class SwapVerdict:
    """The verdicts on one pair shown in both orders: forward (a, b), then backward (b, a)."""

    winner: str | None  # "a" or "b" when both verdicts name it; None otherwise
    positions: tuple[str, ...] = ()  # the two verdict letters, when both replies parsed
    problems: tuple[str, ...] = ()  # one message per unparsed reply


def swap_verdict(forward: str, backward: str) -> SwapVerdict:
    """Which response the judge picked in both orders, if it picked the same one both times."""
    positions, problems = [], []
    for order, reply in (("first-second", forward), ("second-first", backward)):
        try:
            positions.append(parse_verdict(reply))
        except VerdictError as err:
            problems.append(f"order {order}: {err}")
    if problems:
        return SwapVerdict(None, problems=tuple(problems))
    # forward shows (a, b), backward (b, a): consistent means the same response wins both times
    winner_forward = "a" if positions[0] == "A" else "b"
    winner_backward = "b" if positions[1] == "A" else "a"
    return SwapVerdict(winner_forward if winner_forward == winner_backward else None, tuple(positions))


def both_orders(prompt: str, a: str, b: str) -> list[tuple[str, str, str]]:
    """The two requests `swap_verdict` reads: (a, b), then (b, a)."""
    return [(prompt, a, b), (prompt, b, a)]


def judge_pairs(items: Sequence[dict[str, Any]], judge: Judge, system: str = "") -> JudgeOutcome:
    """Ask `judge` about every candidate pair in both orders; keep the consistent verdicts."""
    pairs = [(item, a, b) for item in items for a, b in candidate_pairs(item)]
    requests = [r for item, a, b in pairs for r in both_orders(item["prompt"], a, b)]
    replies = judge(requests) if requests else []
    if len(replies) != len(requests):
        raise RuntimeError(f"the judge returned {len(replies)} replies for {len(requests)} requests")
    outcome = JudgeOutcome(pairs=len(pairs))
    for index, (item, a, b) in enumerate(pairs):
        forward, backward = replies[2 * index], replies[2 * index + 1]
        reject = {"id": item["id"], "prompt": item["prompt"], "first": a, "second": b, "replies": [forward, backward]}
        verdict = swap_verdict(forward, backward)
        if verdict.problems:
            outcome.unparsed_replies += len(verdict.problems)
            outcome.parse_failures += 1
            outcome.rejects.append({**reject, "reason": "judge reply not parsed: " + "; ".join(verdict.problems)})
            continue
        if verdict.winner is None:
            outcome.inconsistent += 1
            outcome.rejects.append({**reject, "reason": f"inconsistent: the judge picked position "
                                                        f"{verdict.positions[0]} in both orders"})
            continue
        chosen, rejected = (a, b) if verdict.winner == "a" else (b, a)
        outcome.rows.append({"system": system, "input": item["prompt"], "chosen": chosen, "rejected": rejected})
    return outcome


class ModelJudge:
    """A Judge backed by a chat model, greedy: transformers here, or a vLLM server (started on `model`, or the
    running ones of --server-url), as `engine` (the command's generation options) says. close() frees the
    model or stops the server."""

    def __init__(self, model: str, engine: argparse.Namespace, log_dir: str | Path, max_new_tokens: int = 512):
        self.generator = open_generator(argparse.Namespace(**{**vars(engine), "model": model, "base": None,
                                                              "adapter": None}), log_dir)
        self.max_new_tokens = max_new_tokens

    def __call__(self, requests: Sequence[tuple[str, str, str]]) -> list[str]:
        prompts = [inference_prompt(self.generator.tokenizer, [{"role": "user", "content": JUDGE_INSTRUCTIONS.format(
            prompt=p, first=a, second=b)}]) for p, a, b in requests]
        results = self.generator.generate(prompts, Sampling(max_new_tokens=self.max_new_tokens), desc="judging")
        return [r.text for r in results]

    def close(self) -> None:
        self.generator.close()


def _candidates(row: dict[str, Any]) -> dict[str, Any] | Drop:
    prompt = fields.text(row, "prompt")
    responses = fields.text_list(row, "responses")
    distinct = list(dict.fromkeys(responses))
    if len(distinct) < 2:
        return Drop("fewer than two distinct responses")
    return {"id": row.get("id"), "prompt": prompt, "responses": distinct}


@command
def main(argv: list[str] | None = None, judge: Judge | None = None) -> int:
    """The command; `judge` replaces the model judge (for tests and other judges)."""
    parser = base_parser(__doc__)
    parser.add_argument("--judge", required=judge is None, help="judge chat model (path or hub name)")
    add_backend_args(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512, help="room for the judge's reasoning and verdict")
    parser.add_argument("--system", default="", help="system field of the written Bradley-Terry rows")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer", "judge")
    stats = Stats()
    rounds = chunks(stream(args.input, _candidates, stats, args.skip_invalid), PROMPTS_PER_ROUND)
    first = next(rounds)  # the input's first rows are read and checked before the judge model loads
    opened = judge or ModelJudge(args.judge, args, Path(args.output).parent, args.max_new_tokens)
    try:
        return finish(args, stats, {args.output: _judged(itertools.chain([first], rounds), opened, args, stats)},
                      messages_of)
    finally:
        if judge is None:
            opened.close()


def _judged(rounds: Iterable[list[dict[str, Any]]], judge: Judge, args: argparse.Namespace,
            stats: Stats) -> Iterator[dict[str, str]]:
    """The kept rows of each round of prompts; at the end, the counts (or the error if none was kept)."""
    total, prompts = JudgeOutcome(), 0
    for items in rounds:
        for item in items:
            if item["id"] is None:
                item["id"] = f"prompt-{prompts}"
            prompts += 1
        outcome = judge_pairs(items, judge, args.system)
        stats.rejects.extend(outcome.rejects)
        for name in ("pairs", "inconsistent", "parse_failures", "unparsed_replies"):
            setattr(total, name, getattr(total, name) + getattr(outcome, name))
        yield from outcome.rows
    for reason, count in (("judge reply not parsed", total.parse_failures),
                          ("inconsistent across the swap", total.inconsistent)):
        if count:
            stats.dropped[f"pairs, {reason}"] = count
    kept = total.pairs - total.inconsistent - total.parse_failures
    print(f"prompts: {prompts}, pairs judged: {total.pairs} (x2 orders), kept: {kept}, "
          f"inconsistent: {total.inconsistent}, parse failures: {total.parse_failures} pairs "
          f"({total.unparsed_replies} replies)")
    if not kept:  # the rejects still tell why
        if args.rejects is not None:
            write_jsonl(args.rejects, stats.rejects)
        raise PrepError(f"no consistent pair to write to {args.output}; see {args.rejects or 'the counts above'}")
