"""Score a reward model on preference pairs: RewardBench-style accuracy, overall, per dataset and split.

    python eval/run_reward_eval.py --model outputs/reward_ja --data data/reward_ja/eval.jsonl --out outputs/reward_ja_eval
    # the card's table, one row per model (e.g. the learning-rate sweep)
    python eval/run_reward_eval.py --compare outputs/reward_ja_lr*/eval/metrics.json

PAIRS rows are {"prompt", "chosen", "rejected", "dataset"?, "split"?} (prep_preference.py
--format eval); rows without a dataset or a split count under the file's name. Each
dataset gets two figures: the card's, the mean of its per-split accuracies (the card
averages HelpSteer3's train and validation accuracies), reported under the card's name
for the dataset, and the accuracy of all its pairs pooled. Each response is scored as the
single-turn conversation (user prompt, assistant response), tokenised with the
checkpoint's own chat template exactly as Axolotl's bradley_terry.chat_template strategy
tokenised it in training (same ids, same cut at --max-length). A pair is correct only if
the chosen score is strictly greater than the rejected one: ties count as wrong.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from recipekit.checkpoints.load import default_device, load_model, require_chat_template
from recipekit.checkpoints.model_path import check_model_args, resolve_model_path
from recipekit.cli import command
from recipekit.dataio.jsonl import iter_json_objects, write_jsonl
from recipekit.generation.engine import ModelLoadError
from recipekit.generation.eval_runner import EvalDataError, load_runs
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.model_card import refresh_card
from recipekit.reporting.tables import fmt, markdown_table, write_metrics
from recipekit.reward.prep import CARD_NAMES

PAIR_FIELDS = ("prompt", "chosen", "rejected")
GROUP_FIELDS = ("dataset", "split")


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pairs as {id, prompt, chosen, rejected, dataset}; errors name the file, line and field."""
    path = Path(path)
    pairs = []
    for line_no, raw in iter_json_objects(path, EvalDataError):
        where = f"{path}:{line_no}"
        for field in PAIR_FIELDS:
            if not isinstance(raw.get(field), str) or not raw[field].strip():
                raise EvalDataError(f"{where}: field {field!r}: missing or not a non-empty string")
        groups = {field: raw.get(field, path.stem) for field in GROUP_FIELDS}
        for field, value in groups.items():
            if not isinstance(value, str) or not value.strip():
                raise EvalDataError(f"{where}: field {field!r}: must be a non-empty string when given")
        pairs.append({"id": str(raw.get("id", f"line-{line_no}")), **groups, **{f: raw[f] for f in PAIR_FIELDS}})
    if not pairs:
        raise EvalDataError(f"{path}: no pairs")
    return pairs


def reward_input_ids(tokenizer, prompt: str, response: str, system: str = "", max_length: int | None = None) -> list[int]:
    """The ids Axolotl's bradley_terry.chat_template strategy trains on for (prompt, response).

    Like that strategy: a system turn always, even an empty one (the strategy requires the
    rows' "system" field and Axolotl turns any present field into a system turn), the
    prompt rendered with the generation prompt, then the rest of the full conversation's
    ids, cut to `max_length` (the recipe's sequence_len).
    """
    turns = [{"role": "system", "content": system}]
    turns.append({"role": "user", "content": prompt})
    prompt_ids = tokenizer.apply_chat_template(turns, tokenize=True, return_dict=False, add_generation_prompt=True)
    full_ids = tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": response}],
                                             tokenize=True, return_dict=False, add_generation_prompt=False)
    ids = list(prompt_ids) + list(full_ids[len(prompt_ids):])
    return ids[:max_length] if max_length else ids


def load_reward_model(path: str, dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) of a sequence-classification checkpoint with one score and a chat template."""
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model_path(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot read the model config ({err})") from err
    architectures = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(f"{path}: not a sequence-classification checkpoint (architectures: {architectures})")
    if config.num_labels != 1:
        raise ModelLoadError(f"{path}: a reward model has one score, this one has num_labels={config.num_labels}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    require_chat_template(tokenizer, path, ModelLoadError)
    model = load_model(path, dtype, device or default_device())
    # As in training: the score is read at the last token that is not padding.
    if model.config.pad_token_id is None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def score_sequences(model, sequences: Sequence[list[int]], batch_size: int = 8, desc: str = "scoring") -> list[float]:
    """One scalar per id list: right-padded batches, longest first."""
    import torch

    pad = model.config.pad_token_id
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    scores: list[float] = [0.0] * len(sequences)
    with tqdm(total=len(sequences), desc=desc, unit="seq") as bar:
        for first in range(0, len(order), batch_size):
            chunk = order[first:first + batch_size]
            width = max(len(sequences[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                ids[row, :len(sequences[index])] = torch.tensor(sequences[index])
                mask[row, :len(sequences[index])] = 1
            with torch.no_grad():
                logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            for index, value in zip(chunk, logits[:, 0].float().tolist()):
                scores[index] = value
            bar.update(len(chunk))
    return scores


def accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """RewardBench: right only when the chosen score is strictly greater (ties are wrong)."""
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)


def _group(rows: list[dict[str, Any]], field: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[field]].append(row)
    return dict(sorted(groups.items()))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"accuracy": accuracy([r["chosen_score"] for r in rows], [r["rejected_score"] for r in rows]),
            "n": len(rows)}


def pair_metrics(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled accuracy overall and per dataset; per dataset also each split's and their mean, the card's figure."""
    per_dataset = {}
    for name, rows in _group(scored, "dataset").items():
        splits = {split: _summary(split_rows) for split, split_rows in _group(rows, "split").items()}
        per_dataset[name] = {**_summary(rows), "split_mean_accuracy": sum(s["accuracy"] for s in splits.values())
                             / len(splits), "per_split": splits}
    ties = sum(r["chosen_score"] == r["rejected_score"] for r in scored)
    card = {CARD_NAMES.get(name, name): m["split_mean_accuracy"] for name, m in per_dataset.items()}
    return {**_summary(scored), "ties": ties, "card": card, "per_dataset": per_dataset}


def metrics_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The card's layout, one row per model: per dataset the card's figure under the card's name and the
    pooled accuracy beside it, then all pairs pooled; the last row gives the pair counts."""
    datasets = sorted({d for m in runs.values() for d in m["per_dataset"]})
    header = [""]
    for d in datasets:
        header += [CARD_NAMES.get(d, d), f"{CARD_NAMES.get(d, d)} pooled"]
    rows = []
    for name, m in runs.items():
        cells = []
        for d in datasets:
            figures = m["per_dataset"].get(d, {})
            cells += [fmt(figures.get("split_mean_accuracy"), digits=4), fmt(figures.get("accuracy"), digits=4)]
        rows.append([name, *cells, fmt(m["accuracy"], digits=4)])
    counts = ["n"]
    for d in datasets:
        figures = next(m["per_dataset"][d] for m in runs.values() if d in m["per_dataset"])
        splits = figures.get("per_split", {})  # absent from metrics.json files written before splits
        counts += [" + ".join(str(s["n"]) for s in splits.values()) or "n/a", str(figures["n"])]
    rows.append([*counts, str(next(iter(runs.values()))["n"])])
    return markdown_table([*header, "all"], rows)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    pairs = read_pairs(args.data)[: args.limit]
    model, tokenizer = load_reward_model(args.model, args.dtype)
    sequences = [reward_input_ids(tokenizer, p["prompt"], p[side], args.system, args.max_length)
                 for side in ("chosen", "rejected") for p in pairs]
    scores = score_sequences(model, sequences, args.batch_size, desc="reward eval")
    scored = [{**p, "chosen_score": scores[i], "rejected_score": scores[len(pairs) + i],
               "correct": scores[i] > scores[len(pairs) + i]} for i, p in enumerate(pairs)]
    out = Path(args.out)
    metrics = pair_metrics(scored)
    write_jsonl(out / "scores.jsonl", scored)
    write_metrics(out, metrics, metrics_markdown({args.name or Path(args.model).name: metrics}))
    write_manifest(out, config=vars(args), inputs=[args.data], seed=None)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="sequence-classification checkpoint (num_labels=1) with a chat template")
    parser.add_argument("--data", help="PAIRS JSONL: prompt, chosen, rejected, dataset (optional)")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--name", help="row name in metrics.md (default: the model folder's name)")
    parser.add_argument("--system", default="", help="system field of the training rows (prep_preference.py --system)")
    parser.add_argument("--max-length", type=int, default=4096, help="cut each conversation here, as training did")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--limit", type=int, help="score only the first N pairs")
    parser.add_argument("--compare", nargs="+", metavar="METRICS", help="print metrics.json files as the card's table")
    parser.add_argument("--names", nargs="+", help="row names for --compare")
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare:
        print(metrics_markdown(load_runs(args.compare, args.names)))
        return 0
    missing = [flag for flag in ("model", "data", "out") if not getattr(args, flag)]
    if missing:
        parser.error("needs " + ", ".join(f"--{m}" for m in missing))
    check_model_args(args, "model")
    metrics = evaluate(args)
    refresh_card(args.model, [Path(args.out) / "metrics.json"])  # a local checkpoint's card gets the new metrics
    print(metrics_markdown({args.name or Path(args.model).name: metrics}))
    return 0
