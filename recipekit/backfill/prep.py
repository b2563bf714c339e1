"""Reasoning backfill: (instruction, solution, thinking) -> ChatML conversations with sentinel tokens.

The user turn wraps the instruction and the solution in their sentinels; the assistant
turn is the reasoning alone, wrapped in the thinking sentinels (the solution is given and
must not change, so the model is not trained to copy it back). `--mode inference` takes
a legacy (instruction, solution) dataset and writes prompt-only rows for backfilling,
keeping the instruction and solution next to them.

    python dataset_prep/prep_backfill.py --input traces.jsonl --output data/backfill/train.jsonl
    python dataset_prep/prep_backfill.py --mode inference --input legacy.jsonl --output data/backfill/legacy_prompts.jsonl
"""

from __future__ import annotations

from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect, finish
from recipekit.dataio.rows import FieldError
from recipekit.templates.shapes import conversation, messages_of
from recipekit.templates.special_tokens import backfill_sentinels, sentinel_pair

DEFAULT_SYSTEM = (
    "Rebuild the reasoning from the INSTRUCTION to the given SOLUTION, step by step: constraints, "
    "approach, checks against the solution, a final consistency check. Never change the solution. "
    "Write the reasoning between <|thinking_start|> and <|thinking_end|>."
)


def wrap(kind: str, text: str) -> str:
    start, end = sentinel_pair(kind)
    return f"{start}\n{text.strip()}\n{end}"


def sentinel_free(row: dict[str, Any], field: str) -> str:
    value = fields.text(row, field)
    found = [s for s in backfill_sentinels() if s in value]
    if found:
        raise FieldError(field, f"already contains sentinel {found[0]}; it would break the layout")
    return value


def user_text(instruction: str, solution: str) -> str:
    return wrap("instruction", instruction) + "\n" + wrap("solution", solution)


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--mode", choices=["train", "inference"], default="train")
    parser.add_argument("--system", default=DEFAULT_SYSTEM)
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        instruction, solution = sentinel_free(row, "instruction"), sentinel_free(row, "solution")
        user = user_text(instruction, solution)
        if args.mode == "inference":
            return {"instruction": instruction, "solution": solution, "conversations": conversation(args.system, user)}
        return {"conversations": conversation(args.system, user, wrap("thinking", sentinel_free(row, "thinking")))}

    records = collect(args.input, convert, stats, args.skip_invalid)
    return finish(args, stats, {args.output: records}, messages_of)
