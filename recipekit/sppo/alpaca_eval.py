"""AlpacaEval for the self-play iterations: answers, a local judge, win rate and length-controlled win rate.

    # answers of one model (resumable), judged against a reference model's outputs by a local judge
    python eval/run_sppo_eval.py --model outputs/sppo/iter_3/checkpoint --name sppo-iter3 \\
        --data alpaca_eval.json --reference REFERENCE_OUTPUTS.json \\
        --judge reward-model --judge-model REWARD_MODEL --out outputs/alpaca_eval/iter3
    # the official evaluation of the same answers, by an API judge
    alpaca_eval --model_outputs outputs/alpaca_eval/iter3/model_outputs.json
    # the card's table: base and each iteration side by side (comparison.md/.json/.png with --out)
    python eval/run_sppo_eval.py --compare outputs/alpaca_eval/{base,iter1,iter2,iter3}/metrics.json \\
        --names base "iter 1" "iter 2" "iter 3" --out outputs/alpaca_eval

--data is AlpacaEval's evaluation set as it ships: a JSON list (or JSONL) of {"instruction",
"dataset", ...}. Each instruction is the one user turn, rendered with the model's chat
template; replies are sampled as alpaca_eval's own config for the SPPO Gemma 2 model does
(models_configs/SPPO-Gemma-2-9B-It-PairRM: temperature 0.7, top-p 0.9, 2048 new tokens;
--temperature 0 is greedy). OUT/model_outputs.json is the JSON list of {"instruction",
"output", "generator", "dataset"} that `alpaca_eval --model_outputs` reads.

The local judge compares each output with the reference output of the same instruction
(pairs are made as alpaca_eval makes them: matched on the instruction, in the reference's
order). A ranker (`reward-model`: a sequence classifier scoring each (instruction, output)
with its own chat template; `pairrm`; or MODULE:NAME) prefers the higher score; `pairwise`
(recipekit.reward.judge) asks a chat model in both orders and names a winner only when the verdict
survives the swap. Preferences are AlpacaEval's: 2 the model wins, 1 the reference wins,
1.5 a tie (equal scores, identical outputs, a swap-inconsistent verdict); an unparsed
verdict is no judgement and is left out, as alpaca_eval leaves out an unparsed annotation.

Both rates come from the alpaca-eval package: get_winrate (ties count 1/2) and
get_length_controlled_winrate, which fits AlpacaEval 2's GLM over every judged instruction
and predicts each preference with the length difference set to zero. That GLM reads
instruction difficulties and two length-gamed baselines' annotations (df_gamed.csv of the
tatsu-lab/alpaca_eval dataset) from the hub; row i takes AlpacaEval instruction i's
difficulty, so it means something on AlpacaEval's 805 instructions in their order only. With
no hub and no cached copy, the LC win rate is reported unavailable, with the reason. A model
compared with itself (same generator name as the reference) gets exactly 50 %.
"""

from __future__ import annotations

import argparse
import logging
import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from recipekit.checkpoints.model_path import check_model_args
from recipekit.cli import command
from recipekit.dataio import rows as fields
from recipekit.dataio.atomic import atomic_write_text
from recipekit.dataio.rows import FieldError, PrepError, RowError, read_rows
from recipekit.generation.engine import Sampling
from recipekit.generation.eval_runner import EvalDataError, generate_predictions, load_runs, scorer_parser
from recipekit.generation.predictions import PredictionStore, read_predictions
from recipekit.generation.shards import parse_args
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.tables import bar_chart_png, fmt, markdown_table, unavailable_note, write_json
from recipekit.reward.judge import ModelJudge, both_orders, swap_verdict
from recipekit.sppo.rankers import Ranker, RankerUnavailable, make_ranker
from recipekit.sppo.stages import StageBook
from recipekit.sppo.summary import outcome
from recipekit.templates.special_tokens import strip_special_tokens

ALPACA_EVAL_SIZE = 805  # the instructions AlpacaEval 2's length-control GLM has difficulties for
MODEL_OUTPUTS = "model_outputs.json"
PREDICTION_FIELDS = ("id", "instruction", "dataset", "output")
JUDGEMENT_FIELDS = ("id", "instruction", "preference")
TABLE_ROWS = (  # (label, key, shown as a percentage)
    ("LC win rate", "lc_win_rate", True),
    ("win rate", "win_rate", True),
    ("avg length (characters)", "avg_length", False),
    ("n", "n", False),
)


def _located(err: FieldError, path: Path, line: int) -> EvalDataError:
    return EvalDataError(f"{path}:{line}: field {err.field!r}: {err.reason}")


def _records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line or item number, object) of a JSON list or JSONL file; errors name file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file")
    try:
        rows = list(read_rows(path))
    except PrepError as err:
        raise EvalDataError(str(err)) from err
    records = []
    for line, row in rows:
        if isinstance(row, RowError):
            raise EvalDataError(str(row))
        if not isinstance(row, dict):
            raise EvalDataError(f"{path}:{line}: expected an object, got {type(row).__name__}")
        records.append((line, row))
    if not records:
        raise EvalDataError(f"{path}: no rows")
    return records


def _unique_instructions(path: Path, rows: list[tuple[int, dict[str, Any]]]) -> None:
    """Outputs are paired by instruction (as alpaca_eval pairs them), so an instruction may occur once."""
    first: dict[str, int] = {}
    for line, row in rows:
        if row["instruction"] in first:
            raise EvalDataError(f"{path}:{line}: field 'instruction': the same instruction as line "
                                f"{first[row['instruction']]}; outputs are matched by instruction")
        first[row["instruction"]] = line


def read_instructions(path: str | Path) -> list[dict[str, str]]:
    """AlpacaEval's instruction set as {"id": position, "instruction", "dataset"} (dataset: the file's name if absent)."""
    path = Path(path)
    rows = []
    for line, raw in _records(path):
        try:
            row = {"instruction": fields.text(raw, "instruction"),
                   "dataset": fields.text(raw, "dataset", optional=True) or path.stem}
        except FieldError as err:
            raise _located(err, path, line) from err
        rows.append((line, row))
    _unique_instructions(path, rows)
    return [{"id": str(i), **row} for i, (_, row) in enumerate(rows)]


def read_outputs(path: str | Path) -> list[dict[str, str]]:
    """A model_outputs.json (AlpacaEval's format) as {"instruction", "output", "generator", "dataset"}.

    "output" may be empty (a model may answer nothing); "generator" defaults to the file's name.
    """
    path = Path(path)
    rows = []
    for line, raw in _records(path):
        try:
            instruction = fields.text(raw, "instruction")
            if not isinstance(raw.get("output"), str):
                raise FieldError("output", "missing or not a string")
            row = {"instruction": instruction, "output": raw["output"],
                   "generator": fields.text(raw, "generator", optional=True) or path.stem,
                   "dataset": fields.text(raw, "dataset", optional=True) or ""}
        except FieldError as err:
            raise _located(err, path, line) from err
        rows.append((line, row))
    _unique_instructions(path, rows)
    return [row for _, row in rows]


def sampling_from(args: argparse.Namespace) -> Sampling:
    """Sampling at --temperature/--top-p with --seed; temperature 0 is greedy."""
    if args.temperature <= 0:
        return Sampling(max_new_tokens=args.max_new_tokens)
    return Sampling(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                    top_p=args.top_p, seed=args.seed)


def generate_outputs(args: argparse.Namespace, name: str, sampling: Sampling, ran: list[str] | None = None) -> Path:
    """OUT/model_outputs.json, the answers of the --model/--base+--adapter to the --data instructions.

    Generation appends to OUT/predictions.jsonl and resumes there; a partial file started with
    other settings or inputs is set aside, and a finished stage is skipped (recipekit.sppo.stages).
    """
    out = Path(args.out)
    rows = read_instructions(args.data)[: args.limit]
    target = out / MODEL_OUTPUTS
    params = {"name": name, "sampling": asdict(sampling), "instructions": len(rows)}
    inputs = [args.data, *(m for m in (args.model, args.base) if m), *(args.adapter or [])]
    book = StageBook(out)
    if book.finished("generate", params, inputs, [target]) is not None:
        return target
    if ran is not None:
        ran.append("alpaca-eval generation")
    book.resume_or_reset("generate", params, inputs, out / "predictions.jsonl")
    for row in rows:
        row["messages"] = [{"role": "user", "content": row["instruction"]}]

    def record(row, prompt, result, generator) -> dict[str, Any]:
        return {"id": row["id"], "instruction": row["instruction"], "dataset": row["dataset"],
                "output": strip_special_tokens(result.text), "new_tokens": result.new_tokens,
                "stopped": result.stopped}

    predictions = generate_predictions(args, rows, PREDICTION_FIELDS, record, "alpaca eval", sampling)
    done = {row["id"]: row for row in read_predictions(predictions, PREDICTION_FIELDS)}
    write_json(target, [{"instruction": row["instruction"], "output": done[row["id"]]["output"],
                         "generator": name, "dataset": row["dataset"]} for row in rows])
    book.finish("generate", params, inputs, [target], {"instructions": len(rows), "hit_token_limit": sum(
        not done[row["id"]]["stopped"] for row in rows)})
    return target


# ---- judges ----------------------------------------------------------------------------------


class LocalJudge(ABC):
    name: str = "judge"

    @abstractmethod
    def compare(self, instructions: Sequence[str], outputs: Sequence[str],
                references: Sequence[str]) -> list[dict[str, Any]]:
        """Per pair {"preference": 2.0 output wins | 1.0 reference wins | 1.5 tie | None unjudged, ...details}."""

    def close(self) -> None:
        """Free the judge's memory."""


class RankerJudge(LocalJudge):
    """A ranker's two scores per instruction; the higher wins, equal scores tie."""

    def __init__(self, ranker: Ranker):
        self.ranker, self.name = ranker, ranker.name

    def compare(self, instructions, outputs, references):
        scores = self.ranker.score(instructions, [[o, r] for o, r in zip(outputs, references, strict=True)])
        return [{"preference": 1.0 + outcome(s[0], s[1]), "output_score": s[0], "reference_score": s[1]}
                for s in scores]

    def close(self) -> None:
        self.ranker.close()


class PairwiseJudge(LocalJudge):
    """recipekit.reward.judge's chat-model judge, asked in both orders; a position-following verdict is a tie."""

    def __init__(self, judge, name: str):
        self.judge, self.name = judge, name

    def compare(self, instructions, outputs, references):
        requests = [r for i, o, ref in zip(instructions, outputs, references, strict=True)
                    for r in both_orders(i, o, ref)]
        replies = self.judge(requests)
        judged = []
        for k in range(len(instructions)):
            verdict = swap_verdict(replies[2 * k], replies[2 * k + 1])
            if verdict.problems:
                preference, why = None, "; ".join(verdict.problems)
            elif verdict.winner is None:
                preference, why = 1.5, f"inconsistent: position {verdict.positions[0]} in both orders"
            else:
                preference, why = (2.0, "output") if verdict.winner == "a" else (1.0, "reference")
            judged.append({"preference": preference, "verdict": why, "replies": replies[2 * k:2 * k + 2]})
        return judged

    def close(self) -> None:
        self.judge.close()


@dataclass(frozen=True)
class JudgeSpec:
    kind: str  # a ranker (reward-model, pairrm, MODULE:NAME) or "pairwise"
    model: str | None
    system: str = ""  # reward model: the system field it was trained with
    max_length: int = 4096  # reward model: its training sequence_len
    max_new_tokens: int = 512  # pairwise: room for the judge's reasoning and verdict
    batch_size: int = 8
    dtype: str = "auto"
    engine: Any = None  # pairwise: the command's generation options (--backend, a vLLM server's settings)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.model}" if self.model else self.kind

    def settings(self) -> dict[str, Any]:
        """What changes the verdicts (batching and the engine do not)."""
        return {k: v for k, v in asdict(self).items() if k not in ("batch_size", "dtype", "engine")}


def open_judge(spec: JudgeSpec, log_dir: Path) -> LocalJudge:
    if spec.kind == "pairwise":
        if not spec.model:
            raise RankerUnavailable("the pairwise judge needs a judge chat model (--judge-model)")
        engine = argparse.Namespace(**{**vars(spec.engine), "batch_size": spec.batch_size, "dtype": spec.dtype})
        return PairwiseJudge(ModelJudge(spec.model, engine, log_dir, spec.max_new_tokens), spec.name)
    return RankerJudge(make_ranker(spec.kind, spec.model, system=spec.system, max_length=spec.max_length,
                                   batch_size=spec.batch_size, dtype=spec.dtype))


# ---- pairing, judging, metrics ---------------------------------------------------------------


def pair_with_reference(outputs_path: Path, reference_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(pairs in the reference's order, the model's outputs); a pair is one instruction both files answer,
    with the reference as output_1 and the model as output_2, as alpaca_eval's annotate_head2head lays it out."""
    outputs, reference = read_outputs(outputs_path), read_outputs(reference_path)
    by_instruction = {row["instruction"]: row for row in outputs}
    pairs = [{"instruction": ref["instruction"], "dataset": by_instruction[ref["instruction"]]["dataset"]
              or ref["dataset"], "output_1": ref["output"], "generator_1": ref["generator"],
              "output_2": by_instruction[ref["instruction"]]["output"],
              "generator_2": by_instruction[ref["instruction"]]["generator"]}
             for ref in reference if ref["instruction"] in by_instruction]
    if not pairs:
        raise EvalDataError(f"{outputs_path}: no instruction in common with the reference {reference_path}")
    names = {p["generator_2"] for p in pairs}
    if len(names) != 1:
        raise EvalDataError(f"{outputs_path}: field 'generator': one model per file, found {sorted(names)}")
    if names == {pairs[0]["generator_1"]} and any(p["output_1"] != p["output_2"] for p in pairs):
        raise EvalDataError(f"{outputs_path}: field 'generator': {pairs[0]['generator_1']!r} is also the reference's "
                            "name, and alpaca_eval would score the outputs as the reference's own (50 %); "
                            "give the model another --name")
    if len(pairs) < len(outputs):
        print(f"{len(outputs) - len(pairs)} of {len(outputs)} outputs answer instructions the reference lacks; "
              "they are not judged")
    return pairs, outputs


def _alpaca_eval_metrics():
    """alpaca_eval.metrics, without what importing the package does to this process: it warns that it
    imports pkg_resources and sets the root logger to INFO."""
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        from alpaca_eval import metrics
    root.setLevel(level)
    return metrics


def _percent(value: Any) -> float | None:
    """alpaca_eval's percentage as a fraction; None where it is not a number (no judged pair, one pair's error)."""
    value = float(value)
    return value / 100 if math.isfinite(value) else None


def win_rates(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """alpaca_eval's win rate and length-controlled win rate of the annotations (fractions, not percent);
    adds each row's "glm_preference" when the GLM ran."""
    import pandas as pd
    import sklearn

    metrics = _alpaca_eval_metrics()
    frame = pd.DataFrame(annotations)
    raw = metrics.get_winrate(frame)
    result = {"n": int(raw["n_total"]), "wins": int(raw["n_wins"]), "losses": int(raw["n_wins_base"]),
              "ties": int(raw["n_draws"]), "unjudged": sum(a["preference"] is None for a in annotations),
              "win_rate": _percent(raw["win_rate"]), "win_rate_se": _percent(raw["standard_error"]),
              "lc_win_rate": None, "lc_win_rate_se": None, "unavailable": {}}
    if len(frame) > ALPACA_EVAL_SIZE:
        result["unavailable"]["lc_win_rate"] = (f"AlpacaEval's GLM has difficulties for its {ALPACA_EVAL_SIZE} "
                                                f"instructions, not for {len(frame)}")
        return result
    try:
        # alpaca_eval switches on scikit-learn's metadata routing globally; the context restores the setting
        with sklearn.config_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-learn deprecations inside alpaca_eval's fit
            # save_weights_dir=None: its default writes the fitted weights into the installed package
            lc = metrics.get_length_controlled_winrate(frame, save_weights_dir=None)
    except OSError as err:  # the hub files: offline and not cached, or unreachable
        result["unavailable"]["lc_win_rate"] = ("needs df_gamed.csv of the tatsu-lab/alpaca_eval dataset from the hub "
                                                f"({type(err).__name__}); run once online or put it in the HF cache")
        return result
    result["lc_win_rate"] = _percent(lc["length_controlled_winrate"])
    result["lc_win_rate_se"] = _percent(lc["lc_standard_error"])
    for row, glm in zip(annotations, frame["glm_preference"]):
        row["glm_preference"] = None if math.isnan(glm) else float(glm)
    return result


def judge_outputs(out: str | Path, outputs_path: str | Path, reference_path: str | Path, spec: JudgeSpec,
                  judge: LocalJudge | None = None, chunk_size: int = 64, ran: list[str] | None = None) -> dict[str, Any]:
    """Judge OUT's model outputs against the reference; write annotations.json and metrics.json/.md/.png.

    Verdicts are appended to OUT/judgements.jsonl chunk by chunk and resumed from there; a
    finished stage is skipped. `judge` replaces the one `spec` names (tests, other judges).
    """
    out, outputs_path, reference_path = Path(out), Path(outputs_path), Path(reference_path)
    book = StageBook(out)
    params = spec.settings()
    inputs = [outputs_path, reference_path, *([spec.model] if spec.model else [])]
    targets = [out / "annotations.json", out / "metrics.json"]
    stats = book.finished("judge", params, inputs, targets)
    if stats is not None:
        return stats
    if ran is not None:
        ran.append("alpaca-eval judging")
    pairs, outputs = pair_with_reference(outputs_path, reference_path)
    book.resume_or_reset("judge", params, inputs, out / "judgements.jsonl")
    store = PredictionStore(out / "judgements.jsonl", JUDGEMENT_FIELDS)
    todo = [(str(i), p) for i, p in enumerate(pairs) if str(i) not in store.done]
    for key, pair in todo:  # as alpaca_eval does, identical outputs tie without asking the judge
        if pair["output_1"] == pair["output_2"]:
            store.append({"id": key, "instruction": pair["instruction"], "preference": 1.5, "identical": True})
    todo = [(key, pair) for key, pair in todo if key not in store.done]
    if todo:
        opened = judge or open_judge(spec, out)
        for first in range(0, len(todo), chunk_size):
            chunk = todo[first:first + chunk_size]
            verdicts = opened.compare([p["instruction"] for _, p in chunk], [p["output_2"] for _, p in chunk],
                                      [p["output_1"] for _, p in chunk])
            if len(verdicts) != len(chunk):
                raise RuntimeError(f"judge {opened.name} gave {len(verdicts)} verdicts for {len(chunk)} pairs")
            for (key, pair), verdict in zip(chunk, verdicts):
                store.append({"id": key, "instruction": pair["instruction"], **verdict})
        if judge is None:
            opened.close()
    verdicts = {row["id"]: row for row in read_predictions(store.path, JUDGEMENT_FIELDS)}
    annotations = [{**pair, "annotator": spec.name, "preference": verdicts[str(i)]["preference"]}
                   for i, pair in enumerate(pairs)]
    metrics = {"generator": pairs[0]["generator_2"], "reference": pairs[0]["generator_1"], "judge": spec.name,
               **win_rates(annotations),
               # as alpaca_eval's leaderboard: characters, over every output of the model
               "avg_length": int(sum(len(o["output"]) for o in outputs) / len(outputs)),
               "reference_avg_length": int(sum(len(p["output_1"]) for p in pairs) / len(pairs))}
    write_json(out / "annotations.json", annotations)
    write_json(out / "metrics.json", metrics)
    write_table(out, "metrics", {metrics["generator"]: metrics})
    write_manifest(out, config={"judge": asdict(spec)}, inputs=inputs, extra={"step": "judge"})
    return book.finish("judge", params, inputs, targets, metrics)


# ---- reports ---------------------------------------------------------------------------------


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The card's table turned on its side: one column per run (base, iter 1, ...)."""
    rows = [[label, *(fmt(m.get(key), percent=percent) for m in runs.values())] for label, key, percent in TABLE_ROWS]
    rows.append(["wins / ties / losses", *(f"{m['wins']} / {m['ties']} / {m['losses']}" for m in runs.values())])
    rows.append(["reference", *(m["reference"] for m in runs.values())])
    rows.append(["judge", *(m["judge"] for m in runs.values())])
    return markdown_table(["", *runs], rows) + "".join(dict.fromkeys(unavailable_note(m) for m in runs.values()))


def write_table(out: Path, stem: str, runs: dict[str, dict[str, Any]]) -> None:
    """OUT/STEM.md and OUT/STEM.png (win rate and LC win rate per run)."""
    atomic_write_text(out / f"{stem}.md", metrics_markdown(runs))

    def percent(key: str) -> list[float]:
        return [math.nan if m.get(key) is None else m[key] * 100 for m in runs.values()]

    references = ", ".join(dict.fromkeys(m["reference"] for m in runs.values()))
    bar_chart_png(list(runs), {"win rate (%)": percent("win_rate"), "LC win rate (%)": percent("lc_win_rate")},
                  out / f"{stem}.png", f"AlpacaEval against {references}")


def write_comparison(out: Path, stem: str, runs: dict[str, dict[str, Any]]) -> None:
    write_json(out / f"{stem}.json", runs)
    write_table(out, stem, runs)


def load_comparison(paths: list[str], names: list[str] | None) -> dict[str, dict[str, Any]]:
    """metrics.json files by run name: the given names, else each run's generator name."""
    if not names:
        runs = load_runs(paths, [str(i) for i in range(len(paths))])
        names = [run["generator"] for run in runs.values()]
        if len(set(names)) < len(names):
            raise EvalDataError(f"runs share a generator name ({', '.join(names)}); give --names")
    return load_runs(paths, names)


# ---- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = scorer_parser(__doc__, "AlpacaEval instructions: a JSON list or JSONL of {instruction, dataset}",
                           max_new_tokens=2048, score_only=("MODEL_OUTPUTS", "judge an existing model_outputs.json "
                                                         "(AlpacaEval's format) instead of generating"))
    parser.add_argument("--name", help="generator name in model_outputs.json (default: the model folder's name)")
    parser.add_argument("--temperature", type=float, default=0.7, help="0: greedy (default: %(default)s)")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=42)
    judging = parser.add_argument_group("judging (skipped without --reference)")
    judging.add_argument("--reference", help="the reference model's outputs in AlpacaEval's format (e.g. the base "
                                             "model's model_outputs.json, or GPT-4 reference outputs)")
    judging.add_argument("--judge", default="reward-model",
                         help="reward-model, pairrm or MODULE:NAME (rankers), or pairwise (default: %(default)s)")
    judging.add_argument("--judge-model", help="reward model (reward-model) or judge chat model (pairwise)")
    judging.add_argument("--judge-system", default="", help="system field the reward model was trained with")
    judging.add_argument("--judge-max-length", type=int, default=4096, help="the reward model's training sequence_len")
    judging.add_argument("--judge-max-new-tokens", type=int, default=512, help="pairwise: room for the verdict")
    judging.add_argument("--judge-batch-size", type=int, default=8)
    judging.add_argument("--chunk-size", type=int, default=64, help="pairs judged before their verdicts are saved")
    return parser


def judge_spec(args: argparse.Namespace) -> JudgeSpec:
    return JudgeSpec(args.judge, args.judge_model, args.judge_system, args.judge_max_length,
                     args.judge_max_new_tokens, args.judge_batch_size, args.dtype, args)


@command
def main(argv: list[str] | None = None, judge: LocalJudge | None = None) -> int:
    """The command; `judge` replaces the one --judge names (tests, other judges)."""
    parser = build_parser()
    args = parse_args(parser, argv, __name__)
    if args.workers.shard or args.workers.merge or args.workers.replicas:
        parser.error("AlpacaEval answers are generated in one process (805 instructions); "
                     "--shard, --merge-shards and --replicas are not offered here")
    if args.compare:
        runs = load_comparison(args.compare, args.names)
        if args.out:
            write_comparison(Path(args.out), "comparison", runs)
        print(metrics_markdown(runs))
        return 0
    if not args.out:
        parser.error("--out is required")
    check_model_args(args, *(("judge_model",) if args.reference else ()),
                     *(() if args.score_only else ("model", "base", "adapter")))
    if args.score_only:
        outputs = Path(args.score_only)
    else:
        if not args.data or not (args.model or args.base):
            parser.error("generating needs --data and --model (or --base with --adapter); "
                         "--score-only judges existing outputs")
        name = args.name or Path(args.model or (args.adapter or [args.base])[-1]).name
        outputs = generate_outputs(args, name, sampling_from(args))
    if not args.reference:
        print(f"wrote {outputs}; judge it with `alpaca_eval --model_outputs {outputs}`, or here with --reference")
        return 0
    metrics = judge_outputs(args.out, outputs, args.reference, judge_spec(args), judge, args.chunk_size)
    print(metrics_markdown({metrics["generator"]: metrics}))
    return 0
