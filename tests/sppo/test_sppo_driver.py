"""The SPPO self-play driver: one real iteration on tiny models, then its parts one by one.

The iteration runs generate -> rank -> pairs -> `axolotl train` -> win-rate -> AlpacaEval
with the tiny Gemma 2 policy and the tiny Llama reward model as ranker and judge (a
different tokenizer and chat template from the policy's). Its files are checked against independent recomputations:
reward scores from single, unpadded forward passes; pair probabilities from the
Bradley-Terry formula written out here.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import types
from pathlib import Path

import pytest
import yaml
from helpers import read_jsonl, stand_in_model

from recipekit.checkpoints.load import TRAINER_STATE, complete_checkpoints
from recipekit.generation.engine import Generated, TransformersGenerator
from recipekit.generation.predictions import PredictionStore
from recipekit.sppo import alpaca_eval, driver
from recipekit.sppo.generate import GENERATION_FIELDS, PromptFileError, read_prompts, sample_responses
from recipekit.sppo.rankers import Ranker, RankerUnavailable, make_ranker
from recipekit.sppo.stages import StageBook
from recipekit.sppo.summary import win_rate
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.smoke import kill_when
from recipekit.training.manifest_plugin import CURVES_JSON
from recipekit.training.runner import parse_log_records

PROMPTS = FIXTURES_DIR / "prepared" / "sppo_prompts_iter1.jsonl"
PROMPTS_2 = FIXTURES_DIR / "prepared" / "sppo_prompts_iter2.jsonl"
ALPACA_INSTRUCTIONS = FIXTURES_DIR / "raw" / "alpaca_eval_instructions.json"
ALPACA_REFERENCE = FIXTURES_DIR / "raw" / "alpaca_eval_reference.json"
K, LIMIT, HOLDOUT, STEPS = 3, 5, 2, 3


def driver_argv(out, policy, ranker, kind="reward-model"):
    return ["--out", str(out), "--prompts", str(PROMPTS), "--start-model", str(policy),
            "--ranker", kind, "--ranker-model", str(ranker), "--k", str(K), "--max-new-tokens", "10",
            "--limit", str(LIMIT), "--holdout", str(HOLDOUT), "--cpu", "--cpu-steps", str(STEPS), "--batch-size", "4",
            "--alpaca-eval", str(ALPACA_INSTRUCTIONS), "--alpaca-reference", str(ALPACA_REFERENCE),
            "--override", "save_strategy=steps", "--override", "save_steps=1"]


@pytest.fixture(scope="module")
def iteration(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sppo-driver")
    policy, ranker = tiny_model("gemma2"), tiny_model("llama", "seq_cls")
    assert driver.main(driver_argv(out, policy, ranker)) == 0
    return {"out": out, "dir": out / "iter_1", "policy": str(policy), "ranker": str(ranker)}


@pytest.mark.train
def test_generations_hold_k_responses_for_the_training_prompts_only(iteration):
    prompts = [json.loads(line)["prompt"] for line in PROMPTS.read_text(encoding="utf-8").splitlines()][:LIMIT]
    rows = read_jsonl(iteration["dir"] / "generations.jsonl")
    assert [r["prompt"] for r in rows] == prompts[:-HOLDOUT]
    for row in rows:
        assert len(row["responses"]) == K
        assert all(r and r == r.strip() for r in row["responses"])
    judged = read_jsonl(iteration["dir"] / "winrate.jsonl")
    assert [r["prompt"] for r in judged] == prompts[-HOLDOUT:]


def _reward(model, tokenizer, prompt, response):
    """One unpadded forward pass of the reward model on its own template's rendering."""
    import torch

    ids = tokenizer.apply_chat_template(
        [{"role": "system", "content": ""}, {"role": "user", "content": prompt},
         {"role": "assistant", "content": response}], tokenize=True, return_dict=False)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


@pytest.fixture(scope="module")
def reward(iteration):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(iteration["ranker"])
    model = AutoModelForSequenceClassification.from_pretrained(iteration["ranker"]).eval()
    return lambda prompt, response: _reward(model, tokenizer, prompt, response)


@pytest.mark.train
def test_scores_are_the_reward_models_own_scores(iteration, reward):
    generated = read_jsonl(iteration["dir"] / "generations.jsonl")
    scored = read_jsonl(iteration["dir"] / "scored.jsonl")
    assert [(r["prompt"], r["responses"]) for r in scored] == [(g["prompt"], g["responses"]) for g in generated]
    for row in scored:
        assert row["scores"] == pytest.approx([reward(row["prompt"], r) for r in row["responses"]], abs=1e-4)
    for row in read_jsonl(iteration["dir"] / "winrate.jsonl"):
        assert row["new_score"] == pytest.approx(reward(row["prompt"], row["new"]), abs=1e-4)
        assert row["previous_score"] == pytest.approx(reward(row["prompt"], row["previous"]), abs=1e-4)


@pytest.mark.train
def test_pairs_follow_bradley_terry_on_the_real_scores(iteration):
    assert_pairs_follow_bradley_terry(iteration["dir"])


def assert_pairs_follow_bradley_terry(iter_dir):
    """pairs.jsonl against scored.jsonl, as uclaml/SPPO scripts/compute_prob.py computes them."""
    scored = read_jsonl(iter_dir / "scored.jsonl")
    pairs = read_jsonl(iter_dir / "pairs.jsonl")
    assert len(pairs) == len(scored)  # random-init scores are never all equal
    for row, pair in zip(scored, pairs):
        s = row["scores"]
        best, worst = s.index(max(s)), s.index(min(s))
        p = [[1 / (1 + math.exp(b - a)) for b in s] for a in s]
        assert pair["chosen"] == [{"role": "user", "content": row["prompt"]},
                                  {"role": "assistant", "content": row["responses"][best]}]
        assert pair["rejected"][1]["content"] == row["responses"][worst]
        assert pair["chosen_probs"] == pytest.approx(p[best][worst])
        assert pair["chosen_probs_win"] == pytest.approx(sum(p[best]) / K)
        assert pair["chosen_probs_lose"] == pytest.approx(sum(p[worst]) / K)


@pytest.mark.train
def test_training_ran_on_this_iterations_pairs_from_the_starting_policy(iteration):
    from recipekit.reporting.manifest import file_sha256

    it = iteration["dir"]
    config = yaml.safe_load(next((it / "train").glob("*.yml")).read_text(encoding="utf-8"))
    assert config["base_model"] == iteration["policy"]
    assert config["datasets"][0]["path"] == str((it / "pairs.jsonl").resolve())
    assert config["output_dir"] == str((it / "checkpoint").resolve())
    assert config["trainer_cls"] == "recipekit.sppo.trainer.SPPOTrainer"
    # --cpu: a few steps, and eager attention, which applies Gemma 2's soft-cap (SDPA would skip it)
    assert config["max_steps"] == STEPS and config["attn_implementation"] == "eager"
    assert (it / "checkpoint" / "model.safetensors").is_file()
    trained_on = json.loads((it / "checkpoint" / "manifest.json").read_text(encoding="utf-8"))["inputs"]
    assert trained_on == {str((it / "pairs.jsonl").resolve()): file_sha256(it / "pairs.jsonl")}


@pytest.mark.train
def test_summary_and_manifest_report_the_iteration(iteration):
    out, it = iteration["out"], iteration["dir"]
    (row,) = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    scored = read_jsonl(it / "scored.jsonl")
    judged = read_jsonl(it / "winrate.jsonl")
    assert row["pairs"] == len(scored)
    assert row["mean_chosen_score"] == pytest.approx(sum(max(r["scores"]) for r in scored) / len(scored))
    assert row["mean_rejected_score"] == pytest.approx(sum(min(r["scores"]) for r in scored) / len(scored))
    outcomes = [1.0 if r["new_score"] > r["previous_score"] else 0.5 if r["new_score"] == r["previous_score"] else 0.0
                for r in judged]
    assert row["win_rate"] == pytest.approx(sum(outcomes) / HOLDOUT) and row["heldout"] == HOLDOUT
    assert math.isfinite(row["final_loss"])
    assert "| 1 | 3 | 0 |" in (out / "summary.md").read_text(encoding="utf-8")
    assert row["prompts_over_limit"] == 0 and (it / "prompt_rejects.jsonl").read_text(encoding="utf-8") == ""
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((it / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["start_model"] == iteration["policy"] and manifest["stages"]["pairs"]["pairs"] == len(scored)


@pytest.mark.train
def test_alpaca_eval_judges_the_starting_policy_and_each_iteration(iteration, reward):
    out, it = iteration["out"], iteration["dir"]
    runs = {"base": out / "base" / "alpaca_eval", "iter 1": it / "alpaca_eval"}
    names = {"base": Path(iteration["policy"]).name, "iter 1": f"{out.name}-iter1"}
    instructions = [row["instruction"] for row in json.loads(ALPACA_INSTRUCTIONS.read_text(encoding="utf-8"))]
    for run, folder in runs.items():
        outputs = json.loads((folder / "model_outputs.json").read_text(encoding="utf-8"))
        assert [o["instruction"] for o in outputs] == instructions and {o["generator"] for o in outputs} == {names[run]}
        generated = json.loads((folder / ".stages" / "generate.json").read_text(encoding="utf-8"))
        assert generated["params"]["sampling"] == {"max_new_tokens": 10, "do_sample": True, "temperature": 0.7,
                                                   "top_p": 0.9, "min_p": None, "seed": 42}
        for row in read_jsonl(folder / "judgements.jsonl"):  # judged by the ranker, the output against the reference
            assert row["output_score"] == pytest.approx(reward(row["instruction"], outputs[int(row["id"])]["output"]),
                                                        abs=1e-4)
    assert str(it / "checkpoint") in generated["inputs"]  # the iteration's answers come from its new checkpoint
    (row,) = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    metrics = json.loads((it / "alpaca_eval" / "metrics.json").read_text(encoding="utf-8"))
    assert row["alpaca_eval"] == metrics and metrics["n"] == len(instructions)
    assert metrics["judge"] == f"reward-model:{iteration['ranker']}"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "AlpacaEval win rate" in summary and f"{metrics['win_rate'] * 100:.2f} %" in summary.splitlines()[-1]
    assert (out / "alpaca_eval.md").read_text(encoding="utf-8").startswith("|  | base | iter 1 |")
    assert set(json.loads((out / "alpaca_eval.json").read_text(encoding="utf-8"))) == {"base", "iter 1"}


@pytest.mark.train
def test_a_rerun_skips_every_stage_without_loading_any_model(iteration, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for name in ("open_policy", "make_ranker", "run_axolotl"):
        monkeypatch.setattr(driver, name, forbidden)
    for name in ("generate_predictions", "open_judge"):
        monkeypatch.setattr(alpaca_eval, name, forbidden)
    marker_dirs = [iteration["dir"] / ".stages", iteration["dir"] / "alpaca_eval" / ".stages",
                   iteration["out"] / "base" / "alpaca_eval" / ".stages"]

    def markers():
        return {str(p): p.stat().st_mtime_ns for d in marker_dirs for p in d.iterdir()}

    before = markers()
    argv = driver_argv(iteration["out"], iteration["policy"], iteration["ranker"])
    assert driver.main(argv) == 0
    assert "every stage was already finished" in capsys.readouterr().out
    assert markers() == before


@pytest.mark.train
@pytest.mark.crash_resume
def test_a_crash_mid_training_resumes_from_the_checkpoint_and_never_retrains_a_finished_iteration(
        iteration, monkeypatch):
    out = iteration["out"]
    argv = driver_argv(out, iteration["policy"], iteration["ranker"]) + ["--prompts", str(PROMPTS_2)]
    checkpoints = out / "iter_2" / "checkpoint"
    # iteration 1 is finished; the driver dies (SIGKILL, with its `axolotl train`) once iteration 2 saved a step
    kill_when([sys.executable, "-m", "recipekit.sppo.driver", *argv], lambda: bool(complete_checkpoints(checkpoints)),
              cwd=out, log_path=out / "killed.log")
    step = max(complete_checkpoints(checkpoints))
    before = json.loads((checkpoints / f"checkpoint-{step}" / TRAINER_STATE).read_text(encoding="utf-8"))
    assert step < STEPS and not (out / "iter_2" / ".stages" / "train.json").exists()

    first_markers = {p.name: p.stat().st_mtime_ns for p in (iteration["dir"] / ".stages").iterdir()}
    trained, run_axolotl = [], driver.run_axolotl
    monkeypatch.setattr(driver, "run_axolotl",
                        lambda command, config, log, **kw: trained.append((config, kw["options"]))
                        or run_axolotl(command, config, log, **kw))
    assert driver.main(argv) == 0
    assert [(config.parent.parent.name, options) for config, options in trained] == [("iter_2", ["--launcher", "python"])]
    assert {p.name: p.stat().st_mtime_ns for p in (iteration["dir"] / ".stages").iterdir()} == first_markers

    log = (out / "iter_2" / "train" / "axolotl_train.log").read_text(encoding="utf-8")
    assert re.search(rf"resume from checkpoint at \S*/checkpoint-{step}\b", log)
    assert len([r for r in parse_log_records(log) if "loss" in r]) == STEPS - step
    curves = json.loads((checkpoints / CURVES_JSON).read_text(encoding="utf-8"))
    assert curves["loss"]["step"] == list(range(1, STEPS + 1))
    assert curves["loss"]["value"][:step] == [r["loss"] for r in before["log_history"] if "loss" in r]
    assert (checkpoints / "model.safetensors").is_file()


@pytest.mark.parametrize(("extra", "options"), [
    ([], ["--launcher", "accelerate"]),
    (["--cpu"], ["--launcher", "python"]),
    (["--launcher", "torchrun", "--launcher-args", "--nproc_per_node 8 --standalone"],
     ["--launcher", "torchrun", "--", "--nproc_per_node", "8", "--standalone"]),
], ids=["default", "cpu", "torchrun"])
def test_the_launcher_and_its_arguments_reach_axolotl_train(extra, options):
    args = driver.build_parser().parse_args(["--out", "out", "--prompts", str(PROMPTS), *extra])
    assert driver.launch_options(args) == options


def test_launcher_arguments_without_a_launcher_process_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        driver.main(["--out", str(tmp_path), "--prompts", str(PROMPTS), "--cpu", "--launcher-args", "--nproc_per_node 2"])
    assert exit_info.value.code == 2 and "--launcher-args needs --launcher accelerate or torchrun" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_training_resumes_a_checkpoint_directory_only_if_it_was_started_with_the_same_config(
        tmp_path, tiny_model, monkeypatch):
    it = driver.Iteration(tmp_path, 1, PROMPTS, str(tiny_model("gemma2")))
    it.dir.mkdir(parents=True)
    it.pairs.write_bytes((FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl").read_bytes())
    seen = []

    def saves_a_step_and_dies(command, config_path, log_path, **options):
        seen.append(((it.checkpoint / "checkpoint-1").is_dir(), (it.dir / "checkpoint.stale").is_dir()))
        (it.checkpoint / "checkpoint-1").mkdir(parents=True, exist_ok=True)
        raise driver.StageError("killed")

    monkeypatch.setattr(driver, "run_axolotl", saves_a_step_and_dies)
    for rate in ("5e-7", "5e-7", "1e-6", "2e-6"):
        args = driver.build_parser().parse_args(["--out", str(tmp_path), "--prompts", str(PROMPTS), "--cpu",
                                                 "--override", f"learning_rate={rate}"])
        with pytest.raises(driver.StageError, match="killed"):
            driver.stage_train(args, it, driver.load_recipe(driver.DEFAULT_RECIPE))
    # started, resumed with its checkpoint-1, set aside for other settings, and again (the older copy replaced)
    assert seen == [(False, False), (True, False), (False, True), (False, True)]


# ---- the parts, without models ----

class ReversedLength(Ranker):
    """Shorter is better: a ranker whose every score is known in advance."""

    name = "fake"

    def __init__(self, model=None, **options):
        self.options = options

    def score(self, prompts, candidates):
        return [[-float(len(c)) for c in group] for group in candidates]


@pytest.fixture
def fake_rankers(monkeypatch):
    module = types.ModuleType("fake_rankers")
    module.shorter = ReversedLength
    module.not_a_ranker = lambda **kwargs: object()
    module.one_score = type("OneScore", (ReversedLength,), {"score": lambda self, p, c: [[0.0] for _ in c]})
    monkeypatch.setitem(sys.modules, "fake_rankers", module)


def rank_args(ranker):
    return argparse.Namespace(ranker=ranker, ranker_model=None, ranker_system="", ranker_max_length=64,
                              ranker_batch_size=2, dtype="auto", chunk_size=1)


def write_generations(iter_dir, rows):
    iter_dir.mkdir(parents=True, exist_ok=True)
    (iter_dir / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_a_plugged_in_ranker_drives_ranking_and_pairs(tmp_path, fake_rankers):
    it = driver.Iteration(tmp_path, 1, PROMPTS, "policy")
    write_generations(it.dir, [{"id": "1", "prompt": "p", "responses": ["ccc", "a", "bb"]},
                               {"id": "2", "prompt": "q", "responses": ["same", "same"]}])
    stats = driver.stage_rank(rank_args("fake_rankers:shorter"), it)
    assert stats["rows"] == 2
    assert [r["scores"] for r in read_jsonl(it.scored)] == [[-3.0, -1.0, -2.0], [-4.0, -4.0]]
    pair_stats = driver.stage_pairs(it)
    (pair,) = read_jsonl(it.pairs)
    assert (pair["chosen"][1]["content"], pair["rejected"][1]["content"]) == ("a", "ccc")
    assert pair_stats["rows_rejected"] == 1 and pair_stats["mean_chosen_score"] == -1.0
    (reject,) = read_jsonl(it.pair_rejects)
    assert reject["line"] == 2 and "all scores are equal" in reject["reason"]


def test_a_ranker_with_the_wrong_number_of_scores_stops_the_stage(tmp_path, fake_rankers):
    it = driver.Iteration(tmp_path, 1, PROMPTS, "policy")
    write_generations(it.dir, [{"id": "1", "prompt": "p", "responses": ["a", "b"]}])
    with pytest.raises(driver.StageError, match="gave 1 scores for 2 responses"):
        driver.stage_rank(rank_args("fake_rankers:one_score"), it)
    assert not (it.dir / ".stages" / "rank.json").exists()


def test_make_ranker_checks_what_it_is_given(fake_rankers):
    assert isinstance(make_ranker("fake_rankers:shorter", None, batch_size=2), ReversedLength)
    with pytest.raises(RankerUnavailable, match="not a recipekit.sppo.rankers.Ranker"):
        make_ranker("fake_rankers:not_a_ranker", None)
    with pytest.raises(RankerUnavailable, match="unknown ranker 'pairwise'"):
        make_ranker("pairwise", None)
    with pytest.raises(RankerUnavailable, match="needs --ranker-model"):
        make_ranker("reward-model", None)


def test_win_rate_counts_ties_as_half():
    assert win_rate([2.0, 1.0, 0.5, 3.0], [1.0, 1.0, 0.7, 3.0]) == {
        "win_rate": (1 + 0.5 + 0 + 0.5) / 4, "wins": 1, "ties": 2, "losses": 1, "heldout": 4}


class RecordingGenerator(TransformersGenerator):
    """Transformers' sampling (reply k drawn with seed + k) over a scripted generate: no model is loaded."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def generate(self, prompts, sampling, on_done=None, desc=""):
        self.calls.append((list(prompts), sampling.seed, sampling.temperature, sampling.top_p))
        return [Generated(f"  seed {sampling.seed} prompt {i}\n", 3, True) for i in range(len(prompts))]


def test_sampling_resumes_and_draws_sample_k_with_seed_plus_k(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    from recipekit.generation.engine import Sampling

    generator = RecordingGenerator(AutoTokenizer.from_pretrained(tiny_model("gemma2")))
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(3)]
    store = PredictionStore(tmp_path / "generations.jsonl", GENERATION_FIELDS)
    store.append({**rows[0], "responses": ["done before"], "stopped": [True]})
    sampling = Sampling(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9, seed=42)
    sample_responses(generator, rows, store, sampling, k=3, chunk_size=1, desc="test")
    assert [(seed, t, p) for _, seed, t, p in generator.calls] == [(42, 0.7, 0.9), (43, 0.7, 0.9), (44, 0.7, 0.9)] * 2
    assert all(prompts[0].endswith("<start_of_turn>model\n") for prompts, *_ in generator.calls)
    written = read_jsonl(store.path)
    assert [r["id"] for r in written] == ["0", "1", "2"]
    assert written[1]["responses"] == ["seed 42 prompt 0", "seed 43 prompt 0", "seed 44 prompt 0"]


def test_stage_markers_notice_changed_settings_inputs_and_damaged_outputs(tmp_path):
    book = StageBook(tmp_path)
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("a\n")
    output.write_text("b\n")
    book.finish("s", {"k": 5}, [source, "hub/model"], [output], {"n": 1})
    assert book.finished("s", {"k": 5}, [source, "hub/model"], [output]) == {"n": 1}
    assert book.finished("s", {"k": 4}, [source, "hub/model"], [output]) is None
    assert book.finished("s", {"k": 5}, [source, "hub/other"], [output]) is None
    output.write_text("b\ntruncated")
    assert book.finished("s", {"k": 5}, [source, "hub/model"], [output]) is None


def test_a_partial_output_from_other_settings_is_set_aside(tmp_path, capsys):
    book, partial = StageBook(tmp_path), tmp_path / "generations.jsonl"
    book.resume_or_reset("generate", {"k": 5}, [], partial)
    partial.write_text('{"id": "1"}\n')
    book.resume_or_reset("generate", {"k": 5}, [], partial)
    assert partial.exists()  # same settings: resumed
    book.resume_or_reset("generate", {"k": 3}, [], partial)
    assert not partial.exists() and (tmp_path / "generations.jsonl.stale").exists()
    assert "starting over" in capsys.readouterr().out


def test_overrides_are_yaml_and_cannot_break_the_iteration_chain():
    assert driver.parse_overrides(["learning_rate=1e-6", "micro_batch_size=4", "deepspeed=null"]) == {
        "learning_rate": 1e-6, "micro_batch_size": 4, "deepspeed": None}
    with pytest.raises(driver.RecipeError, match="the driver sets base_model"):
        driver.parse_overrides(["base_model=other"])
    with pytest.raises(driver.RecipeError, match="expected KEY=VALUE"):
        driver.parse_overrides(["learning_rate"])


def test_a_bad_prompt_file_names_file_line_and_field_and_writes_nothing(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"text": "no prompt"}\n', encoding="utf-8")
    with pytest.raises(PromptFileError, match=rf"{prompts}:2: field 'prompt': missing"):
        read_prompts(prompts)
    out = tmp_path / "out"
    code = driver.main(["--out", str(out), "--prompts", str(prompts), "--start-model", stand_in_model(tmp_path, "policy"),
                        "--ranker-model", stand_in_model(tmp_path, "ranker"), "--holdout", "1"])
    assert code == 2 and f"{prompts}:2" in capsys.readouterr().err
    assert not out.exists()


def test_the_driver_leaves_out_prompts_over_512_tokens_of_the_starting_policy(tmp_path, tiny_model, gemma2_prompt,
                                                                              monkeypatch):
    at_limit, over, far_over = gemma2_prompt(512), gemma2_prompt(513), gemma2_prompt(514)
    prompts = tmp_path / "prompts.jsonl"  # a part that never went through prep_sppo_prompts.py
    lines = ["Write a poem.", over, at_limit, "Name a colour.", far_over, "Count to three."]
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in lines), encoding="utf-8")
    seen = {}

    def stop_after_reading(args, it, train_rows):
        seen["train"] = [r["id"] for r in train_rows]
        raise driver.StageError("stopped by the test")

    monkeypatch.setattr(driver, "stage_generate", stop_after_reading)
    out = tmp_path / "out"
    assert driver.main(["--out", str(out), "--prompts", str(prompts), "--start-model", str(tiny_model("gemma2")),
                        "--ranker-model", stand_in_model(tmp_path, "ranker"), "--holdout", "1"]) == 2  # the default limit is the card's 512
    assert seen["train"] == ["1", "3", "4"]  # line 6 is held out for the win-rate
    assert read_jsonl(out / "iter_1" / "prompt_rejects.jsonl") == [
        {"file": str(prompts), "line": line, "field": "prompt", "row": {"prompt": prompt},
         "reason": f"{n} tokens as the policy's chat prompt, over the limit of 512"}
        for line, prompt, n in ((2, over, 513), (5, far_over, 514))]
