"""The Bitext customer-support CSV (flags, instruction, category, intent, response) -> Gemma 3 conversations.

`category`, `intent` and `flags` stay on each row as metadata for evaluation; the
held-out split is stratified by intent.

    python dataset_prep/prep_bitext.py --input bitext.csv --output data/cs_chatbot/train.jsonl \\
        --split-test 500 --test-output data/cs_chatbot/test.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect, finish
from recipekit.dataio.split import stratified_split
from recipekit.templates.shapes import conversation, messages_of


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--system", default="", help="optional system prompt (Gemma 3 prepends it to the first user turn)")
    parser.add_argument("--split-test", type=int, metavar="K", help="hold out K rows, stratified by intent")
    parser.add_argument("--test-output", type=Path, help="JSONL file of the held-out rows")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    if (args.split_test is None) != (args.test_output is None):
        parser.error("--split-test and --test-output go together")
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        turns = conversation(args.system or None, fields.text(row, "instruction"), fields.text(row, "response"))
        return {
            "category": fields.text(row, "category"),
            "intent": fields.text(row, "intent"),
            "flags": fields.text(row, "flags", optional=True) or "",
            "conversations": turns,
        }

    records = collect(args.input, convert, stats, args.skip_invalid)
    outputs = {args.output: records}
    if args.split_test is not None:
        outputs[args.output], outputs[args.test_output] = stratified_split(
            records, lambda r: r["intent"], args.split_test, args.seed
        )
    return finish(args, stats, outputs, messages_of)
