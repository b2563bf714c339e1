"""Stage 2 of the supervisor: judged (category, transcript, document) rows -> Gemma 4 conversations.

Each output row is {"id", "label", "conversations"}: the system prompt, the user turn
"[Category] …\\n[Conversation Transcript] …\\n[Retrieved Document] …", and the assistant
judgement "<think>\\n…\\n</think>\\n{"label": …, "reason": …}". `id` and `label` stay next to
the conversation for the scorer. With --tokenizer, a row longer than --max-tokens has its
user text cut from the end (the retrieved document goes first) until it fits; the
assistant text is never touched.

    python dataset_prep/prep_supervisor.py --input judged.jsonl \\
        --output data/supervisor/stage2_train.jsonl \\
        --test-counts correct=52,incorrect=147 --test-output data/supervisor/stage2_test.jsonl --balance \\
        --tokenizer google/gemma-4-12B-it --max-tokens 4096
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect, finish
from recipekit.dataio.rows import FieldError
from recipekit.dataio.split import class_count_split, oversample, parse_class_counts, stratified_split
from recipekit.templates.chat_format import ConversationError, to_messages
from recipekit.templates.lengths import token_length
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


def clip_user_text(record: dict[str, Any], tokenizer, max_tokens: int) -> bool:
    """Cut the user turn from its end until the conversation fits; True if anything was cut."""
    turns = record["conversations"]
    user_turn = next(t for t in turns if t["from"] == "user")
    full = user_turn["value"]

    def fits(length: int) -> bool:
        user_turn["value"] = full[:length]
        return token_length(tokenizer, messages_of(record)) <= max_tokens

    if fits(len(full)):
        return False
    if not fits(0):
        user_turn["value"] = full
        raise FieldError("<row>", f"system and assistant text alone exceed --max-tokens {max_tokens}")
    low, high = 0, len(full)  # fits(low) holds, fits(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    user_turn["value"] = full[:low]
    return True


def _label(record: dict[str, Any]) -> str:
    return record["label"]


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
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    if (args.split_test is None and args.test_counts is None) != (args.test_output is None):
        parser.error("--test-output goes with --split-test or --test-counts")
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
        record = _from_conversation(row) if "conversations" in row else _from_fields(row, args.system)
        if tokenizer is not None and clip_user_text(record, tokenizer, args.max_tokens):
            stats.clipped += 1
        return record

    records = collect(args.input, convert, stats, args.skip_invalid)
    outputs = {}
    if args.split_test is not None:
        records, outputs[args.test_output] = stratified_split(records, _label, args.split_test, args.seed)
    elif args.test_counts is not None:
        records, outputs[args.test_output] = class_count_split(records, _label, args.test_counts, args.seed)
    if args.balance:
        records = oversample(records, _label, args.seed)
    outputs = {args.output: records, **outputs}
    return finish(args, stats, outputs, messages_of)
