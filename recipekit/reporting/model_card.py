"""Model cards: a README.md for every merged, 4-bit exported or fully trained checkpoint.

    python -m recipekit.reporting.model_card --model outputs/supervisor_merged [--metrics outputs/eval/metrics.json ...]

The card is built with huggingface_hub's ModelCard and ModelCardData from files alone, so
every number in it is a number in one of them:

- the checkpoint's manifest.json and those of the runs it came from, followed back through
  a training run's base_model, a merge's base and adapters, and an export's source: the
  pipeline, the hyper-parameters, the data and the versions;
- the header comment of each recipe a training manifest names: what the recipe does, the
  public model card it reproduces (name and link) and its "Deviations from the card";
- the scorers' metrics.json files: each scorer's own table, with a column for every earlier
  checkpoint of the pipeline scored on the same test file (the source cards' "stage-1 only"
  column), and a model-index of the headline metrics in the metadata.

The metadata is what the hub links and filters on: base_model as a hub id (the root of the
chain, recipekit.checkpoints.origin), its licence and the data's language
(recipekit.reporting.card_facts), hub datasets, pipeline tag and tags; a field that the files
cannot give is left out and the summary says why. No absolute path of this machine is written:
runs beside the checkpoint are named relative to it, recipes relative to the repository, the
base model by its hub id. The metadata also lists the metrics files (`recipekit_metrics`,
relative to the checkpoint), so when a scorer writes new metrics for a checkpoint directory the
card is rewritten with the earlier ones kept. Sections follow the source cards: title and summary
(base model, licence, language, method), pipeline, metrics, training details, data, deviations,
loading, reproducibility.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import site
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from recipekit.checkpoints.hub import CARD_NAME, add_push_args, check_login, push_folder
from recipekit.checkpoints.origin import BaseModel, base_model, is_hub_id
from recipekit.cli import command
from recipekit.dataio.atomic import atomic_write_text
from recipekit.errors import RecipekitError
from recipekit.paths import REPO_ROOT
from recipekit.reporting.card_facts import base_license, recipe_language
from recipekit.reporting.manifest import MANIFEST_NAME
from recipekit.reporting.tables import markdown_table
from recipekit.training.recipe_config import load_recipe, read_header

TEMPLATE = Path(__file__).parents[1] / "data" / "model_card.md"
METRICS_KEY = "recipekit_metrics"
# Written beside manifest.json by the training plugin; shown when the checkpoint holds one.
CURVES_NAME = "training_curves.png"
DATA_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt"})
# Axolotl keys shown as hyper-parameters when a run sets them, in the order the source cards list them.
HYPERPARAMETERS = (
    "adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear",
    "optimizer", "learning_rate", "lr_scheduler", "warmup_ratio", "warmup_steps", "weight_decay", "max_grad_norm",
    "micro_batch_size", "gradient_accumulation_steps", "num_epochs", "max_steps", "sequence_len", "sample_packing",
    "rl", "rl_beta", "dpo_loss_type", "trainer_cls", "reward_model", "chat_template", "seed", "bf16",
    "attn_implementation", "deepspeed",
)
PACKAGES = ("axolotl", "transformers", "trl", "peft", "torch", "bitsandbytes")


class CardError(RecipekitError, ValueError):
    """A manifest, recipe or metrics file that a model card cannot be built from."""


@dataclass(frozen=True)
class Scorer:
    module: str  # has metrics_markdown(runs), the table the scorer itself prints
    marker: str  # a key that only this scorer's metrics.json has
    rows: str | None  # the module's (label, key, ...) headline rows; None: per dataset (reward)


SCORERS = (
    Scorer("recipekit.supervisor.scoring", "parse_fail_rate", "CARD_ROWS"),
    Scorer("recipekit.chatbot.scoring", "per_intent", "OVERALL_ROWS"),
    Scorer("recipekit.backfill.eval", "well_formed_rate", "CARD_ROWS"),
    Scorer("recipekit.reward.scoring", "per_dataset", None),
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CardError(f"{path}: cannot be read ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise CardError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from err


def _code(value: Any) -> str:
    return f"`{value}`"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).replace("|", "\\|")


@dataclass
class Step:
    """One run that made the checkpoint or one of its ancestors: its directory and manifest."""

    kind: str  # "train", "merge" or "quantize"
    path: Path
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @property
    def parent(self) -> str | None:
        """The model this step started from, as its manifest names it."""
        if self.kind in ("merge", "quantize"):
            return self.manifest[self.kind].get("base" if self.kind == "merge" else "source")
        return self.config.get("base_model")


def read_step(directory: Path) -> Step | None:
    """DIRECTORY's run, or None when its manifest is not a training run's, a merge's or an export's."""
    manifest = _read_json(directory / MANIFEST_NAME)
    if not isinstance(manifest, dict):
        return None
    for kind in ("merge", "quantize"):
        if isinstance(manifest.get(kind), dict):
            return Step(kind, directory, manifest)
    return Step("train", directory, manifest) if manifest.get("step") == "axolotl train" else None


def local_dir(ref: Any) -> Path | None:
    """The directory a manifest names, when it is here and holds a manifest.json (relative: to here or the repo)."""
    if not ref:
        return None
    path = Path(str(ref))
    for candidate in (path,) if path.is_absolute() else (path, REPO_ROOT / path):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    return None


def lineage(model_dir: Path) -> list[Step]:
    """The runs that made MODEL_DIR, oldest first, as far back as their manifests are found."""
    last = read_step(model_dir)
    if last is None:
        raise CardError(f"{model_dir / MANIFEST_NAME}: not written by a training run, a merge or a 4-bit export")
    steps: list[Step] = []
    seen: set[Path] = set()

    def visit(directory: Path | None, follow_base: bool) -> None:
        if directory is None or directory.resolve() in seen:
            return
        seen.add(directory.resolve())
        step = last if directory == model_dir else read_step(directory)
        if step is None:
            return
        if follow_base:
            visit(local_dir(step.parent), True)
        if step.kind == "merge":  # each adapter's training run; its base is the merge's base, visited above
            for adapter in step.manifest["merge"].get("adapters") or []:
                visit(local_dir(adapter.get("path")), False)
        steps.append(step)

    visit(model_dir, True)
    return steps


@dataclass
class Evaluation:
    path: Path  # the scorer's metrics.json
    metrics: dict[str, Any]
    scorer: Scorer
    data: str | None  # the test file, from the scorer's manifest beside metrics.json

    @property
    def name(self) -> str:
        return self.path.parent.name


def read_evaluation(path: str | Path) -> Evaluation:
    path = Path(path)
    metrics = _read_json(path)
    scorer = next((s for s in SCORERS if isinstance(metrics, dict) and s.marker in metrics), None)
    if scorer is None:
        markers = ", ".join(s.marker for s in SCORERS)
        raise CardError(f"{path}: not a scorer's metrics.json (it has none of the keys {markers})")
    manifest_path = path.parent / MANIFEST_NAME
    manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
    config = manifest.get("config") if isinstance(manifest, dict) else None
    data = config.get("data") if isinstance(config, dict) else None
    return Evaluation(path, metrics, scorer, str(data) if data else None)


def recorded_card(model_dir: Path) -> tuple[list[Path], str | None] | None:
    """The metrics files and model name listed by a card this module wrote in MODEL_DIR, else None."""
    path = model_dir / CARD_NAME
    if not path.is_file():
        return None
    try:
        data = ModelCard.load(path, ignore_metadata_errors=True).data
    except (ValueError, yaml.YAMLError):
        return None  # not a card of ours
    if METRICS_KEY not in data:
        return None
    return [model_dir / p for p in data[METRICS_KEY] or []], data.model_name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def eval_results(evaluation: Evaluation, task: str) -> list[EvalResult]:
    """The headline metrics of one metrics.json as model-index entries (raw values, not rounded)."""
    m = evaluation.metrics
    dataset = evaluation.data or evaluation.name
    # A hub dataset by its id; a local test file by its name, not by where it lies on this machine.
    named = dataset if _hub_id(dataset) else Path(dataset).stem
    test_set = {"task_type": task, "dataset_type": named, "dataset_name": named}
    if evaluation.scorer.rows is None:  # reward model: per dataset the card's figure and the pooled one
        from recipekit.reward.prep import CARD_NAMES

        results = []
        for raw, figures in m["per_dataset"].items():
            named = {"task_type": task, "dataset_type": raw, "dataset_name": CARD_NAMES.get(raw, raw)}
            for key, metric, label in (("split_mean_accuracy", "accuracy", "accuracy, mean of the per-split figures"),
                                       ("accuracy", "pooled_accuracy", "accuracy, all pairs pooled")):
                if _number(figures.get(key)):
                    results.append(EvalResult(**named, metric_type=metric, metric_name=label,
                                              metric_value=figures[key]))
        return results + [EvalResult(**test_set, metric_type="accuracy", metric_name="accuracy, every pair pooled",
                                     metric_value=m["accuracy"])]
    from recipekit.metrics.text import bertscore_label

    rows = getattr(importlib.import_module(evaluation.scorer.module), evaluation.scorer.rows)
    return [EvalResult(**test_set, metric_type=key, metric_name=label or bertscore_label([m]), metric_value=m[key])
            for label, key, *_ in rows if key != "n" and _number(m.get(key))]


def _recipe(step: Step) -> tuple[str, Path | None]:
    """The configuration file a training manifest names (as named, and where it is found here)."""
    named = step.config.get("axolotl_config_path") or next(
        (a for a in step.manifest.get("command") or [] if str(a).endswith((".yml", ".yaml"))), None)
    if not named:
        return "unknown", None
    path = Path(str(named))
    found = next((p for p in (path, REPO_ROOT / path) if p.is_file()), None)
    return str(named), found


def _recipe_name(step: Step) -> str:
    """The recipe a training run used: a run configuration's source recipe, else the file the manifest names."""
    named, found = _recipe(step)
    return (read_header(found).source if found else None) or named


def _source_recipe(step: Step) -> Path | None:
    """The recipe file a training run's configuration was made from (itself when it names no other), if here."""
    path = Path(_recipe_name(step))
    return next((p for p in (path, REPO_ROOT / path) if p.is_file()), None)


def _base(steps: list[Step]) -> BaseModel:
    """The hub id of the model at the root of the chain; a stand-in takes the id of its recipe's base_model."""
    root = steps[0]
    if root.kind != "train":
        return base_model(root.parent)
    recipe = _source_recipe(root)
    return base_model(root.parent, _recipe_name(root) if recipe else None,
                      load_recipe(recipe).get("base_model") if recipe else None)


def _languages(steps: list[Step]) -> list[str]:
    """Each training run's data language: the run's `data_language` key, else its recipe's."""
    return list(dict.fromkeys(filter(None, (s.config.get("data_language") or recipe_language(_recipe_name(s))
                                            for s in steps if s.kind == "train"))))


def _quant_type(step: Step) -> str:
    return str((step.manifest["quantize"].get("quantization") or {}).get("bnb_4bit_quant_type"))


def _method(step: Step) -> str:
    if step.kind == "merge":
        return "adapter merge"
    if step.kind == "quantize":
        return f"bitsandbytes {_quant_type(step)} export"
    config = step.config
    objective = "reward model" if config.get("reward_model") else f"rl {config['rl']}" if config.get("rl") else "SFT"
    return f"{objective}, {config['adapter'] + ' adapter' if config.get('adapter') else 'full fine-tune'}"


def _tags(steps: list[Step]) -> list[str]:
    tags = ["recipekit"]
    for step in steps:
        if step.kind == "quantize":
            tags += ["bitsandbytes", _quant_type(step)]
        elif step.kind == "train":
            config = step.config
            tags += ["axolotl", config.get("adapter") or "full-fine-tune", *(["reward-model"] if config.get(
                "reward_model") else []), *([config["rl"]] if config.get("rl") else [])]
    return tags


def _hub_id(ref: Any) -> bool:
    """True for a hub repo id, false for anything that is a local path or looks like a data file."""
    return is_hub_id(ref) and Path(str(ref)).suffix.lower() not in DATA_SUFFIXES


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# Where the interpreter and its packages live, innermost first: a path there is shown from there on
# (the `axolotl` script, axolotl/cli/train.py), never as this machine's absolute path.
INSTALL_DIRS = sorted({os.path.join(sys.prefix, "bin"), *site.getsitepackages(), site.getusersitepackages(),
                       sys.prefix, sys.base_prefix} - {os.sep}, key=len, reverse=True)


def _model_class(model_dir: Path) -> str:
    from transformers import AutoConfig

    from recipekit.checkpoints.load import model_class

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise CardError(f"{model_dir}: no model configuration to load ({str(err).splitlines()[0]})") from err
    return model_class(config).__name__


class _Card:
    """The sections of one checkpoint's card, from its lineage and evaluations."""

    def __init__(self, model_dir: Path, steps: list[Step], evaluations: list[Evaluation], title: str):
        self.model_dir, self.steps, self.evaluations, self.title = model_dir, steps, evaluations, title
        self.trainings = [s for s in steps if s.kind == "train"]
        self.base = _base(steps)
        self.license, self.license_note = base_license(self.base.hub_id) if self.base.hub_id else (
            None, "no hub id of the base model was found")
        self.languages = _languages(steps)

    def path(self, ref: Any) -> str:
        """REF as the card shows it: the root model's directory by its hub id, any other absolute path relative
        to the interpreter's folders, the card's folder or the repository, else by its name alone."""
        text = str(ref)
        if not os.path.isabs(text):
            return text
        candidates = list(dict.fromkeys((os.path.abspath(text), os.path.realpath(text))))
        root = str(self.steps[0].parent)
        if self.base.hub_id and os.path.isabs(root) and os.path.realpath(root) in map(os.path.realpath, candidates):
            return self.base.hub_id
        card_dirs = dict.fromkeys((os.path.abspath(self.model_dir), os.path.realpath(self.model_dir)))
        starts = [*((d, d) for d in INSTALL_DIRS), *((d, os.path.dirname(d)) for d in card_dirs),
                  (str(REPO_ROOT), str(REPO_ROOT))]
        for start, within in starts:
            for path in candidates:
                if _within(path, within):
                    return os.path.relpath(path, start)
        return os.path.basename(candidates[0])

    def argument(self, arg: Any) -> str:
        """A command-line argument with the absolute path in it (`PATH` or `--option=PATH`) shown as path() does."""
        option, equals, value = str(arg).partition("=")
        return f"{option}={self.path(value)}" if equals and os.path.isabs(value) else self.path(arg)

    def where(self, step: Step) -> str:
        return "this checkpoint" if step is self.steps[-1] else _code(self.path(step.path))

    def summary(self, load_class: str) -> str:
        """The last recipe's description, then base model, licence, languages, method, recipes and model class."""
        found = [path for _, path in map(_recipe, self.trainings[-1:]) if path]
        base = f"{_code(self.base.hub_id)} ({self.base.note})" if self.base.hub_id else (
            f"not named in the metadata: {self.base.note}")
        license_ = f"{_code(self.license)} ({self.license_note})" if self.license else (
            f"not named in the metadata: {self.license_note}")
        languages = ", ".join(map(_code, self.languages)) or (
            "not named in the metadata: no recipe of this repository trained it, so the language of its data is "
            "not known")
        rows = [["Base model", base], ["Licence", license_], ["Language", languages],
                ["Method", " → ".join(_method(s) for s in self.steps)],
                ["Recipes", ", ".join(_code(self.path(r)) for r in dict.fromkeys(_recipe_name(s) for s in self.trainings))
                 or "none found"],
                ["Model class", _code(load_class)]]
        return "\n\n".join(filter(None, [*(read_header(path).description for path in found),
                                          markdown_table(["", ""], rows)]))

    def pipeline(self) -> str:
        lines = []
        for step in self.steps:
            head = f"- **{_method(step)}** of {_code(self.path(step.parent))} → {self.where(step)}"
            if step.kind == "train":
                lines.append(f"{head}, `axolotl train {self.path(_recipe(step)[0])}`")
            elif step.kind == "merge":
                merge = step.manifest["merge"]
                adapters = ", ".join(_code(self.path(a.get("path"))) for a in merge.get("adapters") or [])
                lines.append(f"{head}: adapters {adapters}, checked against {merge.get('reference')}: "
                             f"max abs logit difference {merge.get('max_abs_logit_diff')} (tolerance "
                             f"{merge.get('tolerance')}), merged in {merge.get('merge_dtype')}, saved in "
                             f"{merge.get('dtype')}")
            else:
                q = step.manifest["quantize"]
                drift = q.get("drift") or {}
                lines.append(f"{head}: weights {q.get('weights_bytes_before')} → {q.get('weights_bytes_after')} "
                             f"bytes, logit drift max {drift.get('max_abs_logit_diff')}, top-1 agreement "
                             f"{drift.get('top1_agreement')}")
        if (self.model_dir / CURVES_NAME).is_file():
            lines.append(f"\n![training curves]({CURVES_NAME})")
        return "\n".join(lines)

    def comparable(self, evaluation: Evaluation) -> dict[str, dict[str, Any]]:
        """Metrics of earlier checkpoints of the pipeline, scored by the same scorer on the same test file."""
        columns = {}
        for step in self.steps[:-1]:
            recorded = recorded_card(step.path)
            for path in recorded[0] if recorded else []:
                if not path.is_file():
                    continue
                earlier = read_evaluation(path)
                if (earlier.scorer == evaluation.scorer and earlier.data and evaluation.data
                        and os.path.abspath(earlier.data) == os.path.abspath(evaluation.data)):
                    columns[step.path.name] = earlier.metrics
        return columns

    def metrics(self) -> str:
        if not self.evaluations:
            return ("Not scored yet. A scorer run on this checkpoint (`eval/run_*_eval.py --model DIR`) adds its "
                    "metrics here.")
        parts = []
        for e in self.evaluations:
            runs = {**self.comparable(e), self.title: e.metrics}
            try:
                table = importlib.import_module(e.scorer.module).metrics_markdown(runs)
            except (KeyError, TypeError, AttributeError) as err:
                raise CardError(f"{e.path}: a field the table needs is missing or malformed ({err!r})") from err
            source = os.path.relpath(e.path.resolve(), self.model_dir.resolve())
            parts.append(f"### {e.name}\n\nScored by `{e.scorer.module}` on {_code(self.path(e.data or 'unknown'))}; "
                         f"metrics from `{source}`.\n\n{table}")
        return "\n".join(parts)

    def training(self) -> str:
        if not self.trainings:
            return "No training run's manifest was found beside the adapters or models this checkpoint came from."
        parts = []
        for step in self.trainings:
            rows = [[_code(key), _show(self.path(value) if isinstance(value, str) else value)]
                    for key in HYPERPARAMETERS if (value := step.config.get(key)) not in (None, "", [])]
            parts.append(f"### {_method(step)}: {_code(self.path(_recipe_name(step)))}\n\nOutput {self.where(step)}, "
                         f"base {_code(self.path(step.parent))}.\n\n"
                         + markdown_table(["Hyper-parameter", "Value"], rows))
        return "\n".join(parts)

    def data(self) -> str:
        parts = []
        for step in self.trainings:
            inputs = step.manifest.get("inputs") or {}
            rows = [[_code(self.path(d.get("path"))), _show(d.get("type")),
                     _code(inputs.get(str(d.get("path"))) or "not hashed")] for d in step.config.get("datasets") or []]
            parts.append(f"Training data of {_code(self.path(_recipe_name(step)))}:\n\n"
                         + markdown_table(["Dataset", "Type", "Content hash (manifest)"], rows))
        if self.evaluations:
            parts.append("Test data:\n\n" + markdown_table(
                ["Test file", "Scored in"], [[_code(self.path(e.data or "unknown")), _code(e.name)]
                                             for e in self.evaluations]))
        return "\n".join(parts) or "No training or test data is recorded."

    def deviations(self) -> str:
        parts = {}
        for step in self.trainings:
            named, found = _recipe(step)
            header = read_header(found) if found else None
            items = ("\n".join(f"- {item}" for item in header.deviations) or "The recipe lists none."
                     if header else f"{_code(self.path(named))} is not on this machine, so its deviations are not listed.")
            if header and header.card_url:
                items = f"Source card: [{header.card_name}]({header.card_url})\n\n{items}"
            recipe = self.path(_recipe_name(step))
            parts.setdefault(recipe, f"### {_code(recipe)}\n\n{items}\n")
        return "\n".join(parts.values()) or "No recipe is named by the runs this checkpoint came from."

    def reproducibility(self) -> str:
        rows = [[_method(s), self.where(s), s.manifest.get("created_utc"), _code((s.manifest.get("git") or {}).get("commit")),
                 (s.manifest.get("git") or {}).get("dirty")] for s in self.steps]
        table = markdown_table(["Step", "Directory", "Created (UTC)", "Git commit", "Uncommitted changes"], rows)
        commands = "\n".join(f"- {_method(s)}: `{' '.join(map(self.argument, s.manifest.get('command') or []))}`"
                             for s in self.steps)
        packages = self.steps[-1].manifest.get("packages") or {}
        versions = ", ".join(f"{name} {packages[name]}" for name in PACKAGES if packages.get(name))
        return f"{table}\nCommands:\n\n{commands}\n\nPackages ({self.where(self.steps[-1])}): {versions or 'not recorded'}."


def build_card(model_dir: str | Path, metrics: Iterable[str | Path] = (), title: str | None = None) -> ModelCard:
    """The card of the checkpoint in MODEL_DIR with the given metrics files, as a huggingface_hub ModelCard."""
    model_dir = Path(model_dir)
    steps = lineage(model_dir)
    last = steps[-1]
    if last.kind == "train" and last.config.get("adapter"):
        raise CardError(f"{model_dir}: a {last.config['adapter']} adapter, not a standalone checkpoint; the "
                        "checkpoint merge/merge_lora.py makes from it gets the card")
    title = title or model_dir.name
    evaluations = [read_evaluation(p) for p in metrics]
    load_class = _model_class(model_dir)
    task = "text-classification" if load_class.endswith("SequenceClassification") else "text-generation"
    card = _Card(model_dir, steps, evaluations, title)
    trainings = card.trainings
    local = {path for s in trainings for path in s.manifest.get("inputs") or {}}
    datasets = [str(d.get("path")) for s in trainings for d in s.config.get("datasets") or []
                if str(d.get("path")) not in local and _hub_id(d.get("path"))]
    datasets += [e.data for e in evaluations if _hub_id(e.data)]
    results = [r for e in evaluations for r in eval_results(e, task)]
    data = ModelCardData(
        base_model=card.base.hub_id,
        license=card.license,
        language=card.languages or None,
        datasets=list(dict.fromkeys(datasets)) or None,
        library_name="transformers",
        pipeline_tag=task,
        tags=_tags(steps),
        model_name=title,
        eval_results=results or None,
        **{METRICS_KEY: [os.path.relpath(e.path.resolve(), model_dir.resolve()) for e in evaluations]},
    )
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), title=title, summary=card.summary(load_class), pipeline=card.pipeline(),
        metrics=card.metrics(), training=card.training(), data=card.data(), deviations=card.deviations(),
        load_class=load_class, reproducibility=card.reproducibility(),
    )


def write_card(model_dir: str | Path, metrics: Iterable[str | Path] = (), title: str | None = None) -> Path:
    """Write MODEL_DIR/README.md atomically: the metrics files an earlier card listed, then METRICS."""
    model_dir = Path(model_dir)
    recorded = recorded_card(model_dir)
    listed: dict[Path, Path] = {}
    for path in recorded[0] if recorded else []:
        if path.is_file():
            listed[path.resolve()] = path
        else:
            print(f"note: {path}, listed in the previous card, is gone; its metrics are left out", file=sys.stderr)
    for path in map(Path, metrics):
        listed[path.resolve()] = path
    card = build_card(model_dir, listed.values(), title or (recorded[1] if recorded else None))
    target = model_dir / CARD_NAME
    atomic_write_text(target, str(card))
    return target


def refresh_card(model_dir: str | Path | None, metrics: Iterable[str | Path] = ()) -> Path | None:
    """Rewrite the card when MODEL_DIR is a local merged, exported or fully trained checkpoint; else do nothing.

    Scorers call this with their new metrics.json; a training run's end can call it with its
    output_dir (a LoRA run's adapter is left alone: its merged checkpoint gets the card).
    """
    if not model_dir or not (Path(model_dir) / MANIFEST_NAME).is_file():
        return None
    step = read_step(Path(model_dir))
    if step is None or (step.kind == "train" and step.config.get("adapter")):
        return None
    path = write_card(model_dir, metrics)
    print(f"model card: {path}")
    return path


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="merged, 4-bit or fully trained checkpoint directory")
    parser.add_argument("--metrics", type=Path, action="append", default=[],
                        help="a scorer's metrics.json (repeat); added to those the card already lists")
    parser.add_argument("--name", help="model name in the card and its model-index (default: the card's, else "
                                       "the directory's name)")
    add_push_args(parser)
    args = parser.parse_args(argv)
    if args.push_to_hub:
        check_login(args.push_to_hub)
    print(f"model card: {write_card(args.model, args.metrics, args.name)}")
    if args.push_to_hub:
        push_folder(args.model, args.push_to_hub, args.private)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
