"""SPPO prompts: de-duplicated, held to the card's prompt limit, dealt into disjoint parts.

Reads UltraFeedback's `instruction` field (or --field) and writes {"prompt": …} rows to
OUTPUT_iter1.jsonl … OUTPUT_iterN.jsonl next to --output's stem. A prompt whose chat
prompt (rendered with the policy's template, as the policy receives it) is longer than
--max-prompt-tokens (512, the card's limit) is left out, counted in the summary and, with
--rejects, written there with its length. Counting needs the policy's --tokenizer; without
one the run stops, unless --max-prompt-tokens 0 turns the limit off (the driver still
applies its own).

    python dataset_prep/prep_sppo_prompts.py --input ultrafeedback.parquet --parts 3 \\
        --tokenizer google/gemma-2-9b-it --output data/sppo/prompts.jsonl
        # -> data/sppo/prompts_iter1.jsonl, _iter2, _iter3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.prep_runner import Stats, base_parser, collect_located, dedupe, finish
from recipekit.dataio.rows import PrepError, RowError
from recipekit.dataio.split import disjoint_parts
from recipekit.sppo.prompt_limit import DEFAULT_MAX_PROMPT_TOKENS, over_limit, policy_tokenizer
from recipekit.templates.shapes import messages_of


def part_path(output: Path, index: int) -> Path:
    return output.with_name(f"{output.stem}_iter{index}{output.suffix or '.jsonl'}")


def drop_long_prompts(located: list[tuple[str, int, dict[str, str]]], tokenizer, limit: int, field: str,
                      stats: Stats) -> list[tuple[str, int, dict[str, str]]]:
    """The (file, line, record) rows within `limit`; the others are counted and kept as rejects."""
    too_long = over_limit(tokenizer, [record["prompt"] for _, _, record in located], limit)
    for index, reason in too_long.items():
        source, line, record = located[index]
        stats.dropped[f"prompt over {limit} tokens"] += 1
        stats.rejects.append(RowError(source, line, field, reason, raw={field: record["prompt"]}).as_reject())
    return [row for index, row in enumerate(located) if index not in too_long]


@command
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--field", default="instruction", help="the prompt field of the input rows")
    parser.add_argument("--parts", type=int, default=3, help="number of SPPO iterations")
    parser.add_argument("--max-prompt-tokens", type=int, default=DEFAULT_MAX_PROMPT_TOKENS,
                        help="leave out prompts longer than this, counted with --tokenizer (the policy's) "
                             "on its chat prompt; 0: no limit (default: %(default)s, the card's)")
    args = parser.parse_args(argv)
    check_model_args(args, "tokenizer")
    if args.max_prompt_tokens < 0:
        parser.error("--max-prompt-tokens must be 0 (no limit) or more")
    if args.max_prompt_tokens and not args.tokenizer:
        parser.error(f"--max-prompt-tokens {args.max_prompt_tokens} counts tokens with the policy's tokenizer: "
                     "pass --tokenizer (e.g. google/gemma-2-9b-it), or --max-prompt-tokens 0 to keep every prompt")
    stats = Stats()

    def convert(row: dict[str, Any]) -> dict[str, str]:
        return {"prompt": fields.text(row, args.field).strip()}

    located = dedupe(collect_located(args.input, convert, stats, args.skip_invalid), lambda r: r[2]["prompt"], stats)
    if args.max_prompt_tokens:
        tokenizer = policy_tokenizer(args.tokenizer, PrepError)
        located = drop_long_prompts(located, tokenizer, args.max_prompt_tokens, args.field, stats)
        if not located:
            raise PrepError(f"every prompt is over --max-prompt-tokens {args.max_prompt_tokens}")
    parts = disjoint_parts([record for _, _, record in located], args.parts, args.seed)
    return finish(args, stats, {part_path(args.output, i + 1): part for i, part in enumerate(parts)}, messages_of)
