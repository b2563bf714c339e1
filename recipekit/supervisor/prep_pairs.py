"""Stage 1 of the supervisor: customer-service (question, answer) pairs -> conversations.

Exact duplicate pairs are removed and counted.

    python dataset_prep/prep_cs_pairs.py --input pairs.jsonl --output data/supervisor/stage1_train.jsonl
"""

from __future__ import annotations

from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect, dedupe, finish
from recipekit.templates.shapes import conversation, messages_of

DEFAULT_SYSTEM = (
    "You are the customer-support assistant of a home-electronics brand. Answer the customer's "
    "question accurately and politely, in the language the customer used."
)


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help="system prompt ('' for none)")
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--answer-field", default="answer")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        question = fields.text(row, args.question_field)
        answer = fields.text(row, args.answer_field)
        return {"conversations": conversation(args.system or None, question, answer)}

    records = collect(args.input, convert, stats, args.skip_invalid)
    records = dedupe(records, lambda r: tuple(t["value"] for t in r["conversations"]), stats)
    return finish(args, stats, {args.output: records}, messages_of)
