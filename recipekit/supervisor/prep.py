"""Stage 2 of the supervisor: judged (category, transcript, document) rows -> Gemma 4 conversations.

Each output row is {"id", "label", "conversations"}: the system prompt, the user turn
"[Category] …\\n[Conversation Transcript] …\\n[Retrieved Document] …", and the assistant
judgement "<think>\\n…\\n</think>\\n{"label": …, "reason": …}". `id` and `label` stay next to
the conversation for the scorer. With --tokenizer, a row longer than --max-tokens has its
user text cut from the end (the retrieved document goes first) until it fits; the
assistant text is never touched. Rows stream through in batches (one batched tokenizer
call per batch, a few more for the rows to cut), rendered and tokenized by one process per
core (--workers); only their labels and token counts stay in memory for the split and the
oversampling.

    python dataset_prep/prep_supervisor.py --input judged.jsonl \\
        --output data/supervisor/stage2_train.jsonl \\
        --test-counts correct=52,incorrect=147 --test-output data/supervisor/stage2_test.jsonl --balance \\
        --tokenizer google/gemma-4-12B-it --max-tokens 4096
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Spool, Stats, base_parser, finish, stream
from recipekit.dataio.rows import FieldError
from recipekit.dataio.split import class_count_split, oversample, parse_class_counts, stratified_split
from recipekit.templates.chat_format import ConversationError, render, to_messages
from recipekit.templates.shapes import conversation, messages_of

LABELS = ("correct", "incorrect")
# The card's SYSTEM prompt, verbatim: the model is trained and, through the training rendering, scored with it.
DEFAULT_SYSTEM = "당신은 전자제품 CS 챗봇의 품질을 평가하는 수퍼바이저입니다."
_JUDGEMENT = re.compile(r"\A<think>\n(?P<think>.*\S.*)\n</think>\n(?P<verdict>\{.*\})\Z", re.S)


def user_text(category: str, transcript: str, document: str) -> str:
    return f"[Category] {category}\n[Conversation Transcript] {transcript}\n[Retrieved Document] {document}"


def judgement_text(think: str, label: str, reason: str) -> str:
    verdict = json.dumps({"label": label, "reason": reason}, ensure_ascii=False)
    return f"<think>\n{think.strip()}\n</think>\n{verdict}"


def parse_judgement(text: str) -> dict[str, str]:
    """{"think", "label", "reason"} of an assistant judgement; ValueError if it is malformed."""
    match = _JUDGEMENT.match(text.strip())
    if not match:
        raise ValueError("is not '<think>\\n…\\n</think>\\n{json}'")
    try:
        verdict = json.loads(match.group("verdict"))
    except json.JSONDecodeError as err:
        raise ValueError(f"verdict is not valid JSON: {err.msg}") from err
    if not isinstance(verdict, dict) or verdict.get("label") not in LABELS:
        raise ValueError(f"verdict label must be one of {', '.join(LABELS)}")
    if not isinstance(verdict.get("reason"), str):
        raise ValueError("verdict reason must be a string")
    return {"think": match.group("think"), "label": verdict["label"], "reason": verdict["reason"]}


def _row_id(row: dict[str, Any], user: str) -> str:
    value = row.get("id")
    if value is None:  # stable across runs, so the scorer can join predictions to gold rows
        return hashlib.sha1(user.encode("utf-8")).hexdigest()[:12]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError("id", f"must be a string or an integer, got {type(value).__name__}")
    return str(value)


def _from_fields(row: dict[str, Any], system: str) -> dict[str, Any]:
    user = user_text(fields.text(row, "category"), fields.text(row, "transcript"), fields.text(row, "document"))
    label = fields.choice(row, "label", LABELS)
    assistant = judgement_text(fields.text(row, "think"), label, fields.text(row, "reason"))
    row_system = fields.text(row, "system", optional=True) or system
    return {"id": _row_id(row, user), "label": label, "conversations": conversation(row_system, user, assistant)}


def _from_conversation(row: dict[str, Any]) -> dict[str, Any]:
    try:
        messages = to_messages(row["conversations"])
    except ConversationError as err:
        raise FieldError("conversations", str(err)) from err
    roles = [m["role"] for m in messages]
    if roles not in (["system", "user", "assistant"], ["user", "assistant"]):
        raise FieldError("conversations", f"roles must be [system,] user, assistant; got {roles}")
    try:
        label = parse_judgement(messages[-1]["content"])["label"]
    except ValueError as err:
        raise FieldError(f"conversations[{len(messages) - 1}].value", str(err)) from err
    system = messages[0]["content"] if roles[0] == "system" else None
    turns = conversation(system, messages[-2]["content"], messages[-1]["content"])
    return {"id": _row_id(row, messages[-2]["content"]), "label": label, "conversations": turns}


def _too_long(max_tokens: int) -> FieldError:
    return FieldError("<row>", f"system and assistant text alone exceed --max-tokens {max_tokens}")


def _user_turn(record: dict[str, Any]) -> dict[str, str]:
    return next(t for t in record["conversations"] if t["from"] == "user")


def _render_with_user(record: dict[str, Any], tokenizer, user: str) -> str:
    turn = _user_turn(record)
    full, turn["value"] = turn["value"], user
    try:
        return render(tokenizer, messages_of(record))
    finally:
        turn["value"] = full


def _token_counts(tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text, in one batched call; the fast tokenizer's offset-free path where it has one."""
    encode = getattr(getattr(tokenizer, "backend_tokenizer", None), "encode_batch_fast", None)
    if encode is None:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [len(encoding) for encoding in encode(texts, add_special_tokens=False)]


def _estimated_cut(text: str, offsets: list[tuple[int, int]], user: str, excess: int) -> int:
    """The user-text length that drops `excess` tokens from the user turn's end, read off one tokenisation.

    Only a first guess (characters near a cut can merge into other tokens), so `clip_batch` checks it.
    """
    kept = user.strip()
    start = text.find(kept) if kept else -1
    if start < 0:
        return 0
    first = bisect_left(offsets, start, key=lambda span: span[0])
    end = bisect_left(offsets, start + len(kept), key=lambda span: span[0])
    if end - first <= excess:
        return 0
    return min(len(user) - 1, len(user) - len(user.lstrip()) + offsets[end - excess][0] - start)


@dataclass(frozen=True)
class _Splice:
    """A record's rendering with its user text swapped for a cut of it, by string splicing.

    A chat template writes the user text verbatim (or trimmed) between a fixed prefix and
    suffix, so a cut's rendering is prefix + cut + suffix: no template call per probe.
    `clip_batch` renders each row's final cut for real and compares, so a template that
    does more than that only costs time (the row is searched again by real renderings).
    """

    prefix: str
    suffix: str
    trims: bool

    @classmethod
    def of(cls, text: str, user: str, trims: bool) -> "_Splice | None":
        kept = user.strip() if trims else user
        start = text.find(kept) if kept else -1
        if start < 0 or text.find(kept, start + 1) >= 0:  # absent, or not one place to cut
            return None
        return cls(text[:start], text[start + len(kept):], trims)

    def text(self, user: str) -> str:
        return self.prefix + (user.strip() if self.trims else user) + self.suffix


def _template_trims(record: dict[str, Any], tokenizer) -> bool:
    """Whether the chat template trims the user text (Gemma's does), read off one rendering."""
    padded = f" {_user_turn(record)['value']} "
    return padded not in _render_with_user(record, tokenizer, padded)


@dataclass
class _Cut:
    """A user-text length search: `low` characters fit, `high` do not; it ends when they are adjacent."""

    low: int
    high: int
    upward: bool  # probe from `low` upwards (else from `high` downwards), in doubling steps
    step: int = 1
    length: int = 0  # token count of the conversation cut at `low`

    def probe(self) -> int:
        offset = min(self.step, (self.high - self.low) // 2) or 1
        return self.low + offset if self.upward else self.high - offset

    def settle(self, at: int, tokens: int, max_tokens: int) -> None:
        if tokens <= max_tokens:
            self.low, self.length = at, tokens
        else:
            self.high = at
        self.step *= 2


class _CutTexts:
    """The rendering of a record cut at a user-text length: spliced where the record allows, else rendered."""

    def __init__(self, records: list[dict[str, Any]], tokenizer, users: dict[int, str], splices: dict[int, _Splice]):
        self.records, self.tokenizer, self.users, self.splices = records, tokenizer, users, splices

    def __call__(self, i: int, at: int) -> str:
        if i in self.splices:
            return self.splices[i].text(self.users[i][:at])
        return _render_with_user(self.records[i], self.tokenizer, self.users[i][:at])

    def count(self, cuts: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """{(record index, user-text length): token count of the conversation cut there}, in one batched call."""
        if not cuts:
            return {}
        return dict(zip(cuts, _token_counts(self.tokenizer, [self(i, at) for i, at in cuts])))


def clip_batch(records: list[dict[str, Any]], tokenizer, max_tokens: int) -> list[tuple[dict, int, bool] | FieldError]:
    """Cut each record's user turn from its end until the conversation fits --max-tokens.

    Returns, per record, (record, its token count, whether it was cut) or the FieldError of a
    row whose system and assistant text alone are too long; the assistant text is never touched.
    The cut is the longest user-text length L found such that L characters fit and L + 1 do
    not. Every conversation is rendered and tokenised once, in one batched call; for a row
    that is too long, the token offsets of that call give a first L, and batched rounds
    (one probe per unsettled row each, on spliced renderings) check it and move it until L
    fits and L + 1 does not. Each cut row's final text (for a row found too long, its text
    with no user text) is then rendered for real: a row whose splice differs is searched
    again on real renderings.
    """
    texts = [render(tokenizer, messages_of(r)) for r in records]
    encoded = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    lengths = [len(encoding) for encoding in encoded]
    results: list[Any] = [(r, n, False) for r, n in zip(records, lengths)]
    users = {i: _user_turn(records[i])["value"] for i, n in enumerate(lengths) if n > max_tokens}
    if not users:
        return results
    guesses = {i: _estimated_cut(texts[i], encoded[i].offsets, users[i], lengths[i] - max_tokens) for i in users}
    trims = _template_trims(records[next(iter(users))], tokenizer)
    splices = {i: splice for i in users if (splice := _Splice.of(texts[i], users[i], trims)) is not None}
    cuts = _search_cuts(_CutTexts(records, tokenizer, users, splices), guesses, max_tokens)
    # the final cut, or for a row found too long the empty user text, rendered for real
    final = {i: cuts[i].low if i in cuts else 0 for i in splices}
    unspliced = [i for i, at in final.items()
                 if splices[i].text(users[i][:at]) != _render_with_user(records[i], tokenizer, users[i][:at])]
    if unspliced:
        cuts.update(_search_cuts(_CutTexts(records, tokenizer, users, {}), {i: guesses[i] for i in unspliced},
                                 max_tokens))
    for i in users:
        if i not in cuts:
            results[i] = _too_long(max_tokens)
            continue
        _user_turn(records[i])["value"] = users[i][:cuts[i].low]
        results[i] = (records[i], cuts[i].length, True)
    return results


def _search_cuts(texts: _CutTexts, guesses: dict[int, int], max_tokens: int) -> dict[int, _Cut]:
    """The settled cut of each record in `guesses`; a record that does not fit even with no user text has none."""
    first_round = {(i, at): None for i, guess in guesses.items() for at in (guess, guess + 1)}
    tokens = texts.count(list(first_round))
    too_long_at_guess = [i for i, guess in guesses.items() if tokens[i, guess] > max_tokens]
    tokens.update(texts.count([(i, 0) for i in too_long_at_guess if guesses[i] > 0]))
    cuts = {}
    for i, guess in guesses.items():
        at_guess, past_guess = tokens[i, guess], tokens[i, guess + 1]
        if at_guess > max_tokens:  # the guess is too long: search down from it, if an empty user text fits
            if tokens[i, 0] <= max_tokens:
                cuts[i] = _Cut(low=0, high=guess, upward=False, length=tokens[i, 0])
        elif past_guess <= max_tokens:  # one more character fits too: search up
            cuts[i] = _Cut(low=guess + 1, high=len(texts.users[i]), upward=True, length=past_guess)
        else:
            cuts[i] = _Cut(low=guess, high=guess + 1, upward=True, length=at_guess)
    while unsettled := {i: cut.probe() for i, cut in cuts.items() if cut.high - cut.low > 1}:
        tokens = texts.count(list(unsettled.items()))
        for i, at in unsettled.items():
            cuts[i].settle(at, tokens[i, at], max_tokens)
    return cuts


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help="system prompt of rows that bring none (default: the card's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="clip user text to fit (needs --tokenizer)")
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--split-test", type=int, metavar="K", help="hold out K rows, stratified by label")
    held_out.add_argument("--test-counts", metavar="LABEL=N,…",
                          help="hold out exactly N rows of each label, e.g. the card's correct=52,incorrect=147")
    parser.add_argument("--test-output", type=Path, help="JSONL file of the held-out rows")
    parser.add_argument("--balance", action="store_true", help="oversample the minority label in the training split")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes that render and tokenize for --tokenizer (default: one per usable core; 0: this one)")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    if (args.split_test is None and args.test_counts is None) != (args.test_output is None):
        parser.error("--test-output goes with --split-test or --test-counts")
    if args.workers is not None and args.workers < 0:
        parser.error("--workers must be 0 or more")
    if args.test_counts is not None:
        try:
            args.test_counts = parse_class_counts(args.test_counts, LABELS)
        except ValueError as err:
            parser.error(f"--test-counts: {err}")
    tokenizer = None
    if args.tokenizer:
        from recipekit.checkpoints.load import load_tokenizer  # imports torch: only when counting

        tokenizer = load_tokenizer(args.tokenizer)
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        return _from_conversation(row) if "conversations" in row else _from_fields(row, args.system)

    def clip(records: list[dict[str, Any]]) -> list[tuple[dict, int, bool] | FieldError]:
        return clip_batch(records, tokenizer, args.max_tokens)

    def uncounted(row: dict[str, Any]) -> tuple[dict[str, Any], None, bool]:
        return convert(row), None, False

    # The records wait on disk; the split and the oversampling choose among indices by label.
    spool, labels, lengths = Spool(), [], array("q")
    converted = stream(args.input, convert, stats, args.skip_invalid, finalize=clip, workers=args.workers) if tokenizer \
        else stream(args.input, uncounted, stats, args.skip_invalid)
    for record, length, clipped in converted:
        spool.append(record)
        labels.append(record["label"])
        stats.clipped += clipped
        if length is not None:
            lengths.append(length)
    train, held = list(range(len(spool))), None
    if args.split_test is not None:
        train, held = stratified_split(train, labels.__getitem__, args.split_test, args.seed)
    elif args.test_counts is not None:
        train, held = class_count_split(train, labels.__getitem__, args.test_counts, args.seed)
    if args.balance:
        train = oversample(train, labels.__getitem__, args.seed)
    order = {args.output: train, **({args.test_output: held} if held is not None else {})}
    counted = array("q", (lengths[i] for indices in order.values() for i in indices)) if tokenizer else None
    return finish(args, stats, {path: spool.take(indices) for path, indices in order.items()}, messages_of, counted)
