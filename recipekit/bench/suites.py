"""The three suites as report sections: packing per recipe, training and scoring throughput."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from recipekit.bench import packing
from recipekit.bench.lengths import (
    SUPERVISOR_STAGE2,
    SUPERVISOR_TEST_PROMPTS,
    LengthSpec,
    conversation_lengths,
    spec_record,
    synthetic_lengths,
)
from recipekit.bench.prep_speed import prep_markdown
from recipekit.bench.report import cell
from recipekit.paths import RECIPES_DIR
from recipekit.reporting.tables import markdown_table
from recipekit.testing.smoke import resolve_fixtures, resolve_tiny_model
from recipekit.training.recipe_config import load_recipe

SYNTHETIC_SETS = {"supervisor_stage2.yml": SUPERVISOR_STAGE2}
# Tiny shapes for --tiny: a handful of short rows, so every code path runs in seconds on CPU.
TINY_TRAIN = LengthSpec("tiny_train", rows=12, low=16, high=120, median=60, sigma=0.5, seed=0)
TINY_PROMPTS = LengthSpec("tiny_prompts", rows=5, low=8, high=160, median=40, sigma=0.8, seed=1)


def conversation_recipes(recipes_dir: Path = RECIPES_DIR) -> list[Path]:
    """Recipes that train on conversations (chat_template SFT); preference and reward recipes pair rows."""
    chosen = []
    for path in sorted(recipes_dir.glob("*.yml")):
        config = load_recipe(path)
        types = {str(d.get("type")) for d in config.get("datasets") or []}
        if not config.get("rl") and not config.get("reward_model") and types == {"chat_template"}:
            chosen.append(path)
    return chosen


def own_mode(config: dict) -> str:
    """The packing mode the recipe trains with on a GPU: flash attention packs into varlen bins."""
    if not config.get("sample_packing"):
        return "unpacked"
    flash = config.get("flash_attention") or config.get("attn_implementation") == "flash_attention_2"
    return "packed_varlen" if flash else "packed_sdpa"


def _recipe_rows(recipe: Path, config: dict, data: str, lengths, seed: int) -> list[dict[str, Any]]:
    """Each mode's figures, with the accumulation that keeps the rows per optimiser step the recipe
    trains with now (its accumulation x the rows per pass of its own mode). A recipe that packs pads
    its bins to sequence_len; unpacked, it would pad each batch only to its longest row, as the cards did."""
    micro, seq = int(config.get("micro_batch_size", 1)), int(config["sequence_len"])
    pad = bool(config.get("pad_to_sequence_len")) and not config.get("sample_packing")
    modes = packing.compare(lengths, micro, seq, pad_to_sequence_len=pad, seed=seed)
    own = next(figures for figures in modes if figures.mode == own_mode(config))
    rows_per_step = int(config.get("gradient_accumulation_steps", 1)) * own.rows_per_pass
    return [{"recipe": recipe.name, "data": data, "sample_packing": figures.mode != "unpacked", **figures.record(),
             "recipe_mode": own.mode, "rows_per_optimizer_step_now": round(rows_per_step, 2),
             "accumulation_for_same_rows_per_step": packing.accumulation_for_rows(rows_per_step, figures)}
            for figures in modes]


def packing_suite(seed: int = 0, recipes: list[Path] | None = None) -> dict[str, Any]:
    results = []
    for recipe in recipes or conversation_recipes():
        config = load_recipe(recipe)
        tokenizer = resolve_tiny_model(recipe, config)
        for fixture in resolve_fixtures(recipe, config):
            lengths = conversation_lengths(fixture, tokenizer)
            results += _recipe_rows(recipe, config, f"fixture {Path(fixture).name} (tiny tokenizer)", lengths, seed)
        if recipe.name in SYNTHETIC_SETS:
            spec = SYNTHETIC_SETS[recipe.name]
            results += _recipe_rows(recipe, config, spec.name, synthetic_lengths(spec), seed)
    return {"seed": seed, "synthetic_sets": [spec_record(s) for s in SYNTHETIC_SETS.values()], "rows": results}


PACKING_COLUMNS = ["recipe", "data", "mode", "micro_batch_size", "sequence_len", "rows", "rows_dropped_too_long",
                   "rows_per_epoch", "passes", "real_tokens", "computed_tokens", "real_fraction", "rows_per_pass",
                   "recipe_mode", "rows_per_optimizer_step_now", "accumulation_for_same_rows_per_step"]


def packing_markdown(section: dict[str, Any]) -> str:
    notes = "\n".join(f"- `{s['name']}`: {s['description']}" for s in section["synthetic_sets"])
    return (f"Synthetic sets:\n{notes}\n\nModes: `unpacked` (shuffled micro-batches padded to the longest row, "
            "multiple of 64); `packed_sdpa` (Axolotl multipack, micro_batch_size bins of sequence_len: SDPA/eager); "
            "`packed_varlen` (one bin of micro_batch_size x sequence_len: flash-attention varlen). Fixture lengths "
            "come from the tiny tokenizer (byte-level, 640 tokens), so they are longer than the real tokenizer's.\n\n"
            + markdown_table(PACKING_COLUMNS, section["rows"], cell))


def training_lengths(tiny: bool):
    spec = TINY_TRAIN if tiny else SUPERVISOR_STAGE2
    return spec, synthetic_lengths(spec)


def prompt_lengths(tiny: bool, rows: int | None):
    """The prompt set's spec and lengths; `rows` draws that many from the same distribution instead."""
    spec = TINY_PROMPTS if tiny else SUPERVISOR_TEST_PROMPTS
    spec = replace(spec, rows=rows) if rows else spec
    return spec, synthetic_lengths(spec)


TRAIN_COLUMNS = ["variant", "status", "description", "rows_per_pass", "gradient_accumulation_steps", "timed_tokens",
                 "tokens_per_second", "model_tflops_per_second", "mfu", "peak_memory_gib", "projected_stage2_hours",
                 "speedup_vs_card", "reason"]
GEN_COLUMNS = ["variant", "status", "description", "batch_size", "timed_rows", "tokens", "prompt_padding",
               "tokens_per_second", "total_seconds_all_rows", "extrapolated", "speedup_vs_loop",
               "same_outputs_as_loop", "reason"]


def training_markdown(section: dict[str, Any]) -> str:
    return (f"Length set: {section['lengths']['description']}; sequence_len {section['sequence_len']}, "
            f"{section['epochs']} epochs; card: {section['card_stage2_seconds'] / 3600:.2f} h on half an H200. "
            f"Peak BF16 used for MFU: {section['peak_bf16_tflops'] or 'none (no GPU)'} TFLOP/s.\n\n"
            + markdown_table(TRAIN_COLUMNS, section["variants"], cell))


def generation_markdown(section: dict[str, Any]) -> str:
    return (f"{section['rows']} prompts ({section['lengths']['description']}) x {section['new_tokens']} new tokens; "
            f"transformers variants: fastest of {section['repeats']} timed passes, taking turns.\n\n"
            + markdown_table(GEN_COLUMNS, section["variants"], cell))


SECTION_HEADINGS = {
    "packing": ("Packing (no model; Axolotl's MultipackBatchSampler)", packing_markdown),
    "train": ("Training throughput (LoRA r=16, all linear layers)", training_markdown),
    "generate": ("Scoring throughput", generation_markdown),
    "prep": ("Preprocessor speed and memory (synthetic rows, child processes)", prep_markdown),
}


def suite_sections(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, Markdown body) of each suite a report holds, in suite order."""
    return [(heading, render(report[suite])) for suite, (heading, render) in SECTION_HEADINGS.items()
            if suite in report]
