"""The SPPO self-play loop: generate -> rank -> pairs -> `axolotl train` -> next iteration.

    python -m recipekit.sppo.driver --out outputs/sppo \\
        --prompts data/sppo/prompts_iter1.jsonl --prompts data/sppo/prompts_iter2.jsonl \\
        --prompts data/sppo/prompts_iter3.jsonl \\
        --ranker reward-model --ranker-model outputs/reward_ja --backend vllm

One iteration per --prompts file (prep_sppo_prompts.py's disjoint parts). Iteration N
starts from iteration N-1's checkpoint (the first from --start-model, default the
recipe's base_model). Prompts longer than --max-prompt-tokens (the card's 512), counted
with that policy's tokenizer on its chat prompt, are left out whether or not the part was
prepared with the limit. Each iteration writes OUT/iter_N/:

    prompt_rejects.jsonl  prompts left out for their length, each with its line and token count
    generations.jsonl   K sampled responses per prompt (temperature 0.7, top-p 0.9, seed + k)
    scored.jsonl        {"prompt", "responses", "scores"}, the ranker's scores
    pairs.jsonl         sppo_pairs.py's rows (pair_rejects.jsonl: rows that made no pair, and why)
    checkpoint/         `axolotl train RECIPE` with base_model = the starting policy (also the
                        reference model), datasets[0].path = pairs.jsonl, output_dir = checkpoint/
    winrate.jsonl       greedy replies of the new and the starting policy on held-out prompts, judged
    alpaca_eval/        with --alpaca-eval: the new policy's AlpacaEval answers (model_outputs.json)
                        and, with --alpaca-reference, their local judgement (recipekit.sppo.alpaca_eval)
    manifest.json       driver settings, resolved training config, input hashes, stage statistics

and OUT/summary.json, summary.md and summary.png, one row per iteration. With --alpaca-eval
the starting policy is evaluated once too (OUT/base/alpaca_eval/), and OUT/alpaca_eval.md,
.json and .png set it beside every iteration, as the card's table does. A re-run skips
every stage whose marker (OUT/iter_N/.stages/, OUT/.../alpaca_eval/.stages/) matches its
settings, inputs and outputs, so a finished iteration is never trained again; it resumes
generation, ranking and judging where they stopped, and training from the last checkpoint
it saved.

Training over several GPUs: `--launcher torchrun --launcher-args "--nproc_per_node 8"`, or
the default accelerate launcher with your `accelerate config`; a DeepSpeed or FSDP2 launcher
config of recipes/launch/ goes in with --override (e.g. deepspeed=recipes/launch/zero3.json).

Generation over several GPUs (recipekit/generation/shards.py): `--replicas N` starts N workers for each
iteration's generate stage and merges their files, then ranks and trains as above. By hand:
every process runs the same command with `--shard I/N` (it generates shard I of the first
iteration not generated yet, into OUT/iter_K/shards/, and stops), then one run with
`--merge-shards N` merges them and goes on until the next iteration's generations are needed.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import yaml

from recipekit.checkpoints.model_path import check_model_args, resolve_model_path
from recipekit.cli import command
from recipekit.dataio.jsonl import write_jsonl
from recipekit.dataio.prep_runner import Stats, collect
from recipekit.dataio.rows import PrepError, RowError
from recipekit.errors import RecipekitError
from recipekit.generation.engine import ModelLoadError
from recipekit.generation.eval_runner import add_backend_args, add_batch_size_arg
from recipekit.generation.predictions import PredictionStore, read_predictions
from recipekit.generation.shards import Shard, Workers, add_scale_out_args, fill, parse_args
from recipekit.paths import RECIPES_DIR
from recipekit.reporting.manifest import write_manifest
from recipekit.sppo import alpaca_eval
from recipekit.sppo.generate import (
    GENERATION_FIELDS,
    PromptFileError,
    greedy_responses,
    open_policy,
    read_prompts,
    sample_responses,
    sampling_settings,
    split_holdout,
)
from recipekit.sppo.pairs import build_pair
from recipekit.sppo.prompt_limit import DEFAULT_MAX_PROMPT_TOKENS, over_limit, policy_tokenizer
from recipekit.sppo.rankers import make_ranker
from recipekit.sppo.stages import StageBook
from recipekit.sppo.summary import iteration_row, win_rate, write_summary
from recipekit.training.cpu_overrides import short_run_overrides
from recipekit.training.recipe_config import RecipeError, apply_overrides, dump_config, load_recipe
from recipekit.training.runner import check_training, run_axolotl

DEFAULT_RECIPE = RECIPES_DIR / "sppo_gemma2_9b.yml"
# Set by the driver for each iteration; a user override of these would break the chain.
ITERATION_KEYS = ("base_model", "datasets", "output_dir")
SCORED_FIELDS = ("id", "prompt", "responses", "scores")


class StageError(RecipekitError, RuntimeError):
    """A stage that ran but did not produce what the next one needs."""


class Iteration:
    """One iteration's directory, its starting policy and its stage markers."""

    def __init__(self, out: Path, number: int, prompts_path: Path, start_model: str):
        self.number, self.prompts_path, self.start_model = number, prompts_path, start_model
        self.dir = out / f"iter_{number}"
        self.prompt_rejects = self.dir / "prompt_rejects.jsonl"
        self.generations = self.dir / "generations.jsonl"
        self.scored = self.dir / "scored.jsonl"
        self.pairs = self.dir / "pairs.jsonl"
        self.pair_rejects = self.dir / "pair_rejects.jsonl"
        self.train_dir = self.dir / "train"
        self.checkpoint = self.dir / "checkpoint"
        self.winrate = self.dir / "winrate.jsonl"
        self.book = StageBook(self.dir)
        self.ran: list[str] = []  # stages this invocation ran (the rest were finished before)


def _ranker_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {"ranker": args.ranker, "model": args.ranker_model, "system": args.ranker_system,
            "max_length": args.ranker_max_length}


def _ranker_inputs(args: argparse.Namespace) -> list[str]:
    return [args.ranker_model] if args.ranker_model else []


def _open_ranker(args: argparse.Namespace, policy: str):
    """`policy`: the policy whose chat prompts the responses answer (PairRM reads the prompt as it saw it)."""
    return make_ranker(args.ranker, args.ranker_model, system=args.ranker_system, max_length=args.ranker_max_length,
                       batch_size=args.ranker_batch_size, dtype=args.dtype, policy=policy)


def policy_prompts(args, it: Iteration) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The part's prompts within --max-prompt-tokens of the starting policy, and how many were left out;
    those go to prompt_rejects.jsonl."""
    rows = read_prompts(it.prompts_path, args.limit)
    too_long = {}
    if args.max_prompt_tokens:
        tokenizer = policy_tokenizer(it.start_model, ModelLoadError)
        too_long = over_limit(tokenizer, [r["prompt"] for r in rows], args.max_prompt_tokens)
    write_jsonl(it.prompt_rejects, [RowError(str(it.prompts_path), int(rows[i]["id"]), "prompt", reason,
                                             raw={"prompt": rows[i]["prompt"]}).as_reject()
                                    for i, reason in too_long.items()])
    kept = [row for i, row in enumerate(rows) if i not in too_long]
    if too_long:
        print(f"iter {it.number}: {len(too_long)} of {len(rows)} prompts are over --max-prompt-tokens "
              f"{args.max_prompt_tokens} and left out; see {it.prompt_rejects}")
    if not kept:
        raise PromptFileError(f"{it.prompts_path}: every prompt is over --max-prompt-tokens {args.max_prompt_tokens}")
    return kept, {"read": len(rows), "over_limit": len(too_long), "max_prompt_tokens": args.max_prompt_tokens}


def _generate_key(args, it: Iteration, train_rows: list[dict[str, str]]) -> tuple[dict[str, Any], list]:
    params = {"k": args.k, "temperature": args.temperature, "top_p": args.top_p,
              "max_new_tokens": args.max_new_tokens, "seed": args.seed, "ids": [r["id"] for r in train_rows]}
    return params, [it.prompts_path, it.start_model]


def stage_generate(args, it: Iteration, train_rows: list[dict[str, str]]) -> dict[str, Any]:
    """K responses per training prompt in generations.jsonl; a shard's process writes only its shard's
    file (and returns no stats), a merging process merges the shards' files."""
    params, inputs = _generate_key(args, it, train_rows)
    workers = args.workers
    stats = None if workers.shard else it.book.finished("generate", params, inputs, [it.generations])
    if stats is not None:
        return stats
    it.ran.append("generate")
    own = workers.dir(it.dir)
    StageBook(own).resume_or_reset("generate", params, inputs, own / it.generations.name)

    def generate(mine: list[dict[str, str]], store: PredictionStore) -> None:
        if any(row["id"] not in store.done for row in mine):  # a vLLM server stops before training starts
            with open_policy(it.start_model, args, store.path.parent) as generator:
                sample_responses(generator, mine, store, sampling_settings(args), args.k, args.chunk_size,
                                 desc=f"iter {it.number}: generating {args.k} responses per prompt")
                engine.update(generator.engine())

    engine: dict[str, Any] = {}

    def same_settings(shard: Shard) -> None:
        if not StageBook(shard.dir(it.dir)).started_with("generate", params, inputs):
            raise StageError(f"{shard.dir(it.dir)}: shard {shard} was generated with other settings or inputs "
                             "than this run's; rerun it with the same options")

    path = fill(workers, it.dir, it.generations.name, train_rows, GENERATION_FIELDS, generate, same_settings)
    if workers.shard:
        return {}
    rows = read_predictions(path, GENERATION_FIELDS)
    missing = {r["id"] for r in train_rows} - {r["id"] for r in rows}
    if missing:
        raise StageError(f"{it.generations}: {len(missing)} prompts have no responses after generating")
    stopped = [flag for row in rows for flag in row["stopped"]]
    stats = {"prompts": len(rows), "responses": len(stopped), "hit_token_limit": stopped.count(False),
             "engine": engine or None}
    return it.book.finish("generate", params, inputs, [it.generations], stats)


def stage_rank(args, it: Iteration) -> dict[str, Any]:
    params = _ranker_spec(args)
    inputs = [it.generations, *_ranker_inputs(args)]
    stats = it.book.finished("rank", params, inputs, [it.scored])
    if stats is not None:
        return stats
    it.ran.append("rank")
    it.book.resume_or_reset("rank", params, inputs, it.scored)
    store = PredictionStore(it.scored, SCORED_FIELDS)
    todo = [row for row in read_predictions(it.generations, GENERATION_FIELDS) if row["id"] not in store.done]
    if todo:
        ranker = _open_ranker(args, it.start_model)
        for first in range(0, len(todo), args.chunk_size):
            chunk = todo[first:first + args.chunk_size]
            scores = ranker.score([r["prompt"] for r in chunk], [r["responses"] for r in chunk])
            for row, row_scores in zip(chunk, scores, strict=True):
                if len(row_scores) != len(row["responses"]):
                    raise StageError(f"ranker {ranker.name} gave {len(row_scores)} scores for "
                                     f"{len(row['responses'])} responses (prompt id {row['id']})")
                store.append({"id": row["id"], "prompt": row["prompt"], "responses": row["responses"],
                              "scores": row_scores})
        ranker.close()
    stats = {"rows": len(read_predictions(it.scored, SCORED_FIELDS)), "ranker": params}
    return it.book.finish("rank", params, inputs, [it.scored], stats)


def stage_pairs(it: Iteration) -> dict[str, Any]:
    stats = it.book.finished("pairs", {}, [it.scored], [it.pairs, it.pair_rejects])
    if stats is not None:
        return stats
    it.ran.append("pairs")
    prep = Stats()

    def convert(row: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
        pair = build_pair(row)  # validates the row first
        return pair, max(row["scores"]), min(row["scores"])

    try:
        records = collect([str(it.scored)], convert, prep, skip_invalid=True)
    except PrepError as err:
        write_jsonl(it.pair_rejects, prep.rejects)
        raise StageError(f"{it.scored}: no training pairs ({err}); each row's reason is in {it.pair_rejects}") from err
    pairs = [pair for pair, _, _ in records]
    write_jsonl(it.pairs, pairs)
    write_jsonl(it.pair_rejects, prep.rejects)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    stats = {
        "pairs": len(pairs),
        "rows_rejected": prep.rejected,
        "reject_reasons": sorted({f"{r['field']}: {r['reason']}" for r in prep.rejects}),
        "mean_chosen_score": mean([best for _, best, _ in records]),
        "mean_rejected_score": mean([worst for _, _, worst in records]),
        "mean_chosen_probs_win": mean([p["chosen_probs_win"] for p in pairs]),
        "mean_chosen_probs_lose": mean([p["chosen_probs_lose"] for p in pairs]),
    }
    if prep.rejected:
        print(f"iter {it.number}: {prep.rejected} scored rows made no pair; reasons in {it.pair_rejects}")
    return it.book.finish("pairs", {}, [it.scored], [it.pairs, it.pair_rejects], stats)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """--override KEY=VALUE (VALUE read as YAML) into a dict of top-level recipe keys."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--override {item!r}: expected KEY=VALUE")
        if key in ITERATION_KEYS:
            raise RecipeError(f"--override {key}: the driver sets {', '.join(ITERATION_KEYS)} for each iteration")
        try:
            overrides[key.strip()] = _yaml_value(value)
        except yaml.YAMLError as err:
            raise RecipeError(f"--override {item!r}: value is not valid YAML ({err})") from err
    return overrides


def _yaml_value(text: str) -> Any:
    """YAML, except that 1e-6 is a number (YAML 1.1 reads it as a string without a dot)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def training_config(args, it: Iteration, recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe with --cpu switches, user overrides, then this iteration's model, data and output."""
    datasets = recipe.get("datasets") or []
    if not datasets:
        raise RecipeError(f"{args.recipe}: the recipe has no datasets entry for the pairs")
    overrides: dict[str, Any] = {}
    if args.cpu:
        overrides.update(short_run_overrides(recipe, base_model=it.start_model, dataset_paths=[str(it.pairs)],
                                             workdir=it.train_dir, steps=args.cpu_steps))
    overrides.update(parse_overrides(args.override))
    overrides.update(
        base_model=it.start_model,
        datasets=[{**datasets[0], "path": str(it.pairs.resolve())}, *datasets[1:]],
        output_dir=str(it.checkpoint.resolve()),
        dataset_prepared_path=str((it.train_dir / "prepared").resolve()),
    )
    return apply_overrides(recipe, overrides)


def launch_options(args) -> list[str]:
    """`axolotl train` options of --launcher and --launcher-args."""
    launcher = args.launcher or ("python" if args.cpu else "accelerate")
    extra = shlex.split(args.launcher_args)
    return ["--launcher", launcher, *(["--", *extra] if extra else [])]


def stage_train(args, it: Iteration, recipe: dict[str, Any]) -> dict[str, Any]:
    config = training_config(args, it, recipe)
    inputs = [it.pairs, it.start_model]
    stats = it.book.finished("train", config, inputs, [it.checkpoint])
    if stats is not None:
        return stats
    it.ran.append("train")
    # The recipe's auto_resume_from_checkpoints continues an interrupted run from the newest
    # checkpoint-N in checkpoint/, so one started with another config must not be there.
    it.book.resume_or_reset("train", config, inputs, it.checkpoint)
    it.train_dir.mkdir(parents=True, exist_ok=True)
    config_path = dump_config(config, it.train_dir / f"{Path(args.recipe).stem}.iter{it.number}.yml", source=args.recipe)
    log_path = it.train_dir / "axolotl_train.log"
    output = run_axolotl("train", config_path, log_path, options=launch_options(args), echo=True, error=StageError)
    _, losses = check_training(output, it.checkpoint, log_path, f"iter {it.number}: axolotl train", StageError)
    stats = {"config": str(config_path), "log": str(log_path), "logged_steps": len(losses),
             "first_loss": losses[0], "final_loss": losses[-1]}
    return it.book.finish("train", config, inputs, [it.checkpoint], stats)


def stage_winrate(args, it: Iteration, heldout: list[dict[str, str]]) -> dict[str, Any]:
    params = {**_ranker_spec(args), "max_new_tokens": args.max_new_tokens, "heldout": [r["id"] for r in heldout]}
    inputs = [it.prompts_path, it.start_model, it.checkpoint, *_ranker_inputs(args)]
    stats = it.book.finished("winrate", params, inputs, [it.winrate])
    if stats is not None:
        return stats
    it.ran.append("winrate")
    prompts = [row["prompt"] for row in heldout]
    replies = {}
    for side, model in (("previous", it.start_model), ("new", str(it.checkpoint))):
        with open_policy(model, args, it.dir / f"winrate_{side}") as generator:
            replies[side] = greedy_responses(generator, prompts, args.max_new_tokens,
                                             desc=f"iter {it.number}: {side} policy")
    ranker = _open_ranker(args, it.start_model)
    scores = ranker.score(prompts, [[new, old] for new, old in zip(replies["new"], replies["previous"])])
    ranker.close()
    rows = [{"id": row["id"], "prompt": row["prompt"], "new": new, "previous": old, "new_score": s[0],
             "previous_score": s[1]} for row, new, old, s in zip(heldout, replies["new"], replies["previous"], scores)]
    write_jsonl(it.winrate, rows)
    stats = win_rate([r["new_score"] for r in rows], [r["previous_score"] for r in rows])
    return it.book.finish("winrate", params, inputs, [it.winrate], stats)


def alpaca_judge(args) -> alpaca_eval.JudgeSpec:
    """--alpaca-judge, else the ranker with its settings."""
    model = args.alpaca_judge_model if args.alpaca_judge else args.ranker_model
    return alpaca_eval.JudgeSpec(args.alpaca_judge or args.ranker, model, args.ranker_system, args.ranker_max_length,
                                 batch_size=args.ranker_batch_size, dtype=args.dtype, engine=args)


def stage_alpaca_eval(args, out: Path, model: str, name: str, ran: list[str]) -> dict[str, Any] | None:
    """AlpacaEval answers of `model` in OUT (sampled like the self-play responses), then, with a
    reference, their local judgement; finished stages are skipped (their own markers in OUT)."""
    generation = argparse.Namespace(**{**vars(args), "model": model, "base": None, "adapter": None,
                                       "data": args.alpaca_eval, "out": out, "limit": None, "workers": Workers()})
    outputs = alpaca_eval.generate_outputs(generation, name, sampling_settings(args), ran)
    if not args.alpaca_reference:
        return None
    return alpaca_eval.judge_outputs(out, outputs, args.alpaca_reference, alpaca_judge(args),
                                     chunk_size=args.chunk_size, ran=ran)


def run_iteration(args, it: Iteration, recipe: dict[str, Any]) -> dict[str, Any]:
    rows, prompt_stats = policy_prompts(args, it)
    train_rows, heldout = split_holdout(rows, args.holdout, it.prompts_path)
    stats = {"prompts": prompt_stats, "generate": stage_generate(args, it, train_rows)}
    stats["rank"] = stage_rank(args, it)
    stats["pairs"] = stage_pairs(it)
    stats["train"] = stage_train(args, it, recipe)
    stats["winrate"] = stage_winrate(args, it, heldout)
    if args.alpaca_eval:
        stats["alpaca_eval"] = stage_alpaca_eval(args, it.dir / "alpaca_eval", str(it.checkpoint),
                                                 f"{args.out.name}-iter{it.number}", it.ran)
    if it.ran or not (it.dir / "manifest.json").exists():
        write_manifest(it.dir, config={"driver": vars(args), "train": training_config(args, it, recipe)},
                       inputs=[it.prompts_path, it.generations, it.scored, it.pairs, it.winrate], seed=args.seed,
                       extra={"iteration": it.number, "start_model": it.start_model,
                              "checkpoint": str(it.checkpoint), "stages": stats})
    print(f"iter {it.number}: " + (f"ran {', '.join(it.ran)}" if it.ran else "every stage was already finished"))
    return iteration_row(it.number, it.start_model, it.checkpoint, stats)


def generate_shard(args, it: Iteration, recipe: dict[str, Any]) -> bool:
    """Generate this process's shard of the iteration if its generations are not merged yet; False when
    they are and the iteration is trained, so the shard belongs to a later one."""
    rows, _ = policy_prompts(args, it)
    train_rows, _ = split_holdout(rows, args.holdout, it.prompts_path)
    if it.book.finished("generate", *_generate_key(args, it, train_rows), [it.generations]) is None:
        stage_generate(args, it, train_rows)
        print(f"iter {it.number}: shard {args.workers.shard} generated; when every shard is done, run the driver "
              f"with --merge-shards {args.workers.shard.count}")
        return True
    if it.book.finished("train", training_config(args, it, recipe), [it.pairs, it.start_model],
                        [it.checkpoint]) is None:
        raise StageError(f"iter {it.number}: its generations are merged but it is not trained yet, so the next "
                         f"iteration has no policy; run the driver with --merge-shards {args.workers.shard.count}")
    return False


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every iteration in turn; a shard's process only generates its shard of the first iteration whose
    generations are not merged yet."""
    recipe = load_recipe(args.recipe)
    out = Path(args.out)
    model = args.start_model or recipe.get("base_model")
    if not model:
        raise RecipeError(f"{args.recipe}: no base_model; pass --start-model")
    resolve_model_path(model, "--start-model" if args.start_model else f"{args.recipe}: base_model")
    summary = []
    alpaca_runs = {}
    if args.alpaca_eval and not args.workers.shard:  # a generation shard only generates
        alpaca_runs["base"] = stage_alpaca_eval(args, out / "base" / "alpaca_eval", str(model), Path(str(model)).name, [])
    for number, prompts_path in enumerate(args.prompts, start=1):
        it = Iteration(out, number, Path(prompts_path), str(model))
        if args.workers.shard:
            if generate_shard(args, it, recipe):
                return summary
        else:
            summary.append(run_iteration(args, it, recipe))
            write_summary(out, summary)
            alpaca_runs[f"iter {number}"] = summary[-1].get("alpaca_eval")
            if args.alpaca_reference:
                alpaca_eval.write_comparison(out, "alpaca_eval", alpaca_runs)
        model = it.checkpoint
    if args.workers.shard:
        print(f"shard {args.workers.shard}: nothing to generate, every iteration is generated and trained")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", action="append", required=True, type=Path,
                        help="prompt part of one iteration, rows {\"prompt\"} (repeat: one per iteration, in order)")
    parser.add_argument("--out", required=True, type=Path, help="directory of the iterations (OUT/iter_N)")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="training recipe (default: %(default)s)")
    parser.add_argument("--start-model", help="policy of iteration 1 (default: the recipe's base_model)")
    ranking = parser.add_argument_group("ranking")
    ranking.add_argument("--ranker", default="reward-model",
                         help="reward-model, pairrm, or MODULE:NAME of your own (default: %(default)s)")
    ranking.add_argument("--ranker-model", help="reward model checkpoint (reward-model), PairRM name (pairrm)")
    ranking.add_argument("--ranker-system", default="",
                         help="system field the reward model was trained with (prep_preference.py --system)")
    ranking.add_argument("--ranker-max-length", type=int, default=4096, help="the reward model's training sequence_len")
    ranking.add_argument("--ranker-batch-size", type=int, default=8)
    sampling = parser.add_argument_group("generation")
    sampling.add_argument("--k", type=int, default=5, help="responses per prompt (default: %(default)s)")
    sampling.add_argument("--temperature", type=float, default=0.7)
    sampling.add_argument("--top-p", type=float, default=0.9)
    sampling.add_argument("--max-new-tokens", type=int, default=2048)
    sampling.add_argument("--seed", type=int, default=42, help="sample k of each prompt uses seed + k")
    add_backend_args(sampling)
    add_batch_size_arg(sampling)
    sampling.add_argument("--chunk-size", type=int, default=256,
                          help="prompts generated (and ranked) before their rows are saved")
    sampling.add_argument("--max-prompt-tokens", type=int, default=DEFAULT_MAX_PROMPT_TOKENS,
                          help="leave out prompts whose chat prompt is longer in the starting policy's tokens "
                               "(default: %(default)s, the card's); 0: no limit")
    sampling.add_argument("--limit", type=int, help="use only the first N prompts of each part (demos)")
    sampling.add_argument("--holdout", type=int, default=16,
                          help="last N prompts of each part: never trained on, they judge the win-rate "
                               "(default: %(default)s)")
    alpaca = parser.add_argument_group("AlpacaEval after each iteration (and once for the starting policy)")
    alpaca.add_argument("--alpaca-eval", type=Path, metavar="INSTRUCTIONS",
                        help="AlpacaEval's instruction set (JSON list or JSONL of {instruction, dataset}); answers "
                             "are sampled with the generation settings above, alpaca_eval's own for SPPO Gemma 2")
    alpaca.add_argument("--alpaca-reference", type=Path, metavar="REFERENCE_OUTPUTS",
                        help="reference outputs in AlpacaEval's format to judge against locally "
                             "(without it only model_outputs.json is written, for the `alpaca_eval` command)")
    alpaca.add_argument("--alpaca-judge", help="local judge: reward-model, pairrm, MODULE:NAME or pairwise "
                                               "(default: the ranker, which training optimised for)")
    alpaca.add_argument("--alpaca-judge-model", help="the --alpaca-judge's model")
    add_scale_out_args(parser)
    training = parser.add_argument_group("training")
    training.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                          help="top-level recipe key, VALUE read as YAML (repeat)")
    training.add_argument("--cpu", action="store_true",
                          help="CPU switches and a few-step run (tests and demos with a tiny model)")
    training.add_argument("--cpu-steps", type=int, default=3, help="training steps per iteration with --cpu")
    training.add_argument("--launcher", choices=("accelerate", "torchrun", "python"),
                          help="how `axolotl train` starts its processes (default: accelerate, as your `accelerate "
                               "config` says; with --cpu: python, this one process)")
    training.add_argument("--launcher-args", default="", metavar="ARGS",
                          help='the launcher\'s own arguments, one string, e.g. "--nproc_per_node 8"')
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv, __name__)
    if args.k < 2:
        parser.error("--k must be at least 2: a pair needs two responses")
    if args.max_prompt_tokens < 0:
        parser.error("--max-prompt-tokens must be 0 (no limit) or more")
    if args.launcher_args and launch_options(args)[1] == "python":
        parser.error("--launcher-args needs --launcher accelerate or torchrun (python starts no other process)")
    if args.server_url:
        parser.error("--server-url: the driver serves each iteration's policy itself (a running server would "
                     "keep serving the first); use --backend vllm alone")
    if args.alpaca_reference and not args.alpaca_eval:
        parser.error("--alpaca-reference needs --alpaca-eval INSTRUCTIONS")
    check_model_args(args, "ranker_model", "alpaca_judge_model")
    run(args)
    if not args.workers.shard:
        print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
