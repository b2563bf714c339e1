"""SPPO prompts: de-duplicated and dealt into disjoint parts, one per self-play iteration.

Reads UltraFeedback's `instruction` field (or --field) and writes {"prompt": …} rows to
OUTPUT_iter1.jsonl … OUTPUT_iterN.jsonl next to --output's stem.

    python dataset_prep/prep_sppo_prompts.py --input ultrafeedback.parquet --parts 3 \\
        --output data/sppo/prompts.jsonl      # -> data/sppo/prompts_iter1.jsonl, _iter2, _iter3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipekit.prep import rows as fields
from recipekit.prep.runner import Stats, base_parser, cli, collect, dedupe, finish
from recipekit.prep.shapes import messages_of
from recipekit.prep.split import disjoint_parts


def part_path(output: Path, index: int) -> Path:
    return output.with_name(f"{output.stem}_iter{index}{output.suffix or '.jsonl'}")


def main(argv: list[str] | None = None) -> int:
    return cli(_run, argv)


def _run(argv: list[str] | None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--field", default="instruction", help="the prompt field of the input rows")
    parser.add_argument("--parts", type=int, default=3, help="number of SPPO iterations")
    args = parser.parse_args(argv)
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, str]:
        return {"prompt": fields.text(row, args.field).strip()}

    records = dedupe(collect(args.input, convert, stats, args.skip_invalid), lambda r: r["prompt"], stats)
    parts = disjoint_parts(records, args.parts, args.seed)
    return finish(args, stats, {part_path(args.output, i + 1): part for i, part in enumerate(parts)}, messages_of)
