"""Preference pairs for the Japanese reward model: HelpSteer3, llm-jp chatbot arena, or plain rows.

Each row's shape is recognised by its fields:
  HelpSteer3   context (turns), response1, response2, overall_preference (-3..3; < 0 means
               response1 is better), language
  arena        conversation_a, conversation_b (turns), winner (model_a | model_b | tie…), turn
  plain        prompt, chosen, rejected, and optionally dataset and split
Ties and multi-turn rows are dropped and counted, as is every row outside --language.
`--format bt` writes the Bradley-Terry training shape read by Axolotl's
`bradley_terry.chat_template` type ({system, input, chosen, rejected}); `--format eval`
writes {prompt, chosen, rejected, dataset, split} for scoring. The split is a plain row's
own, else its input's: a hub dataset's split (owner/name:split, train unless named) or a
local file's name without extension. The card's HelpSteer3 figure is the mean over its
train and validation splits, so give them as separate inputs:

    python dataset_prep/prep_preference.py --input pairs.jsonl --output data/reward_ja/train.jsonl
    python dataset_prep/prep_preference.py --format eval --language japanese \\
        --input nvidia/HelpSteer3:train --input nvidia/HelpSteer3:validation \\
        --input llm-jp/llm-jp-chatbot-arena-conversations --output data/reward_ja/eval.jsonl
"""

from __future__ import annotations

from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Drop, Stats, base_parser, collect_located, finish
from recipekit.dataio.rows import FieldError, source_split
from recipekit.templates.shapes import messages_of

# The datasets recognised here, as the reward card's table names them.
CARD_NAMES = {"helpsteer3": "HelpSteer3", "llm-jp-chatbot-arena": "llm-jp-chatbot-arena"}


def _single_prompt(turns: list[dict[str, str]], field: str) -> str | Drop:
    users = [t for t in turns if t["role"] == "user"]
    if len(users) != 1:
        return Drop("multi-turn")
    if not users[0]["content"].strip():
        raise FieldError(f"{field}[0].content", "is empty")
    return users[0]["content"]


def _helpsteer3(row: dict[str, Any]) -> dict[str, str] | Drop:
    prompt = _single_prompt(fields.turns(row, "context"), "context")
    first, second = fields.text(row, "response1"), fields.text(row, "response2")
    preference = fields.integer(row, "overall_preference", -3, 3)
    if isinstance(prompt, Drop):
        return prompt
    if preference == 0:
        return Drop("tie")
    chosen, rejected = (first, second) if preference < 0 else (second, first)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "dataset": "helpsteer3"}


def _reply(turns: list[dict[str, str]], field: str) -> str:
    replies = [t["content"] for t in turns if t["role"] == "assistant"]
    if not replies or not replies[0].strip():
        raise FieldError(field, "has no assistant reply")
    return replies[0]


def _arena(row: dict[str, Any]) -> dict[str, str] | Drop:
    side_a, side_b = fields.turns(row, "conversation_a"), fields.turns(row, "conversation_b")
    winner = fields.text(row, "winner")
    if not (winner in ("model_a", "model_b") or winner.startswith("tie")):
        raise FieldError("winner", f"unknown value {winner!r}; expected model_a, model_b or tie…")
    if fields.integer(row, "turn", 1, 10_000) > 1:
        return Drop("multi-turn")
    prompt = _single_prompt(side_a, "conversation_a")
    if isinstance(prompt, Drop):
        return prompt
    if _single_prompt(side_b, "conversation_b") != prompt:
        raise FieldError("conversation_b", "its prompt differs from conversation_a's")
    if winner.startswith("tie"):
        return Drop("tie")
    a, b = _reply(side_a, "conversation_a"), _reply(side_b, "conversation_b")
    chosen, rejected = (a, b) if winner == "model_a" else (b, a)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "dataset": "llm-jp-chatbot-arena"}


def _plain(row: dict[str, Any]) -> dict[str, str]:
    pair = {
        "prompt": fields.text(row, "prompt"),
        "chosen": fields.text(row, "chosen"),
        "rejected": fields.text(row, "rejected"),
        "dataset": fields.text(row, "dataset", optional=True) or "plain",
    }
    split = fields.text(row, "split", optional=True)
    return {**pair, "split": split} if split else pair


def to_pair(row: dict[str, Any], language: str | None) -> dict[str, str] | Drop:
    """One (prompt, chosen, rejected, dataset) pair, or the reason the row is left out."""
    if "overall_preference" in row or "context" in row:
        if language and str(row.get("language", "")).lower() != language.lower():
            return Drop(f"language is not {language}")
        return _helpsteer3(row)
    if "conversation_a" in row or "winner" in row:
        return _arena(row)
    if "chosen" in row or "prompt" in row:
        return _plain(row)
    raise FieldError("<row>", "neither HelpSteer3 (context, response1, response2, overall_preference), "
                              "arena (conversation_a, conversation_b, winner) nor plain (prompt, chosen, rejected)")


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--format", choices=["bt", "eval"], default="bt")
    parser.add_argument("--language", help="keep only HelpSteer3 rows of this language (e.g. japanese)")
    parser.add_argument("--system", default="", help="system prompt of the Bradley-Terry rows ('' for none)")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, str] | Drop:
        pair = to_pair(row, args.language)
        if isinstance(pair, Drop) or args.format == "eval":
            return pair
        return {"system": args.system, "input": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}

    located = collect_located(args.input, convert, stats, args.skip_invalid)
    if args.format == "eval":
        records = [{**pair, "split": pair.get("split") or source_split(source)} for source, _, pair in located]
    else:
        records = [record for _, _, record in located]
    return finish(args, stats, {args.output: records}, messages_of)
