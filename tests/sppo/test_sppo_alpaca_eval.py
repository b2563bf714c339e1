"""eval/run_sppo_eval.py: AlpacaEval answers, a local judge, and alpaca_eval's own win rates.

One real run generates with the tiny Gemma 2 policy and judges with the tiny Llama reward
model against the fixture reference outputs. The files it writes are read back by the
alpaca-eval package's own reader and evaluation entry point (with the judge's preferences
injected in place of its API annotator), so the figures here are the ones `alpaca_eval`
computes from the same preferences. The length-controlled GLM needs two files of the
tatsu-lab/alpaca_eval hub dataset; tests that fit it hand alpaca_eval a stand-in file with
the same columns: two length-gamed baselines annotated by a judge that prefers length.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
from helpers import StandInGeneratorBase, read_jsonl, run_script, stand_in_model

from recipekit.generation.engine import Generated
from recipekit.paths import REPO_ROOT
from recipekit.sppo import alpaca_eval as ae
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "eval" / "run_sppo_eval.py"
INSTRUCTIONS = FIXTURES_DIR / "raw" / "alpaca_eval_instructions.json"
REFERENCE = FIXTURES_DIR / "raw" / "alpaca_eval_reference.json"
NAME = "tiny-gemma2"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path, data):
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def generated(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("alpaca") / "run"
    argv = ["--model", tiny_model("gemma2"), "--name", NAME, "--data", INSTRUCTIONS, "--reference", REFERENCE,
            "--judge-model", tiny_model("llama", "seq_cls"), "--max-new-tokens", 8, "--batch-size", 6, "--out", out]
    done = run_script(SCRIPT, *argv)
    assert done.returncode == 0, done.stderr
    return {"out": out, "argv": [str(a) for a in argv], "stdout": done.stdout,
            "ranker": str(tiny_model("llama", "seq_cls"))}


def official_evaluate(model_outputs, reference, preferences, fn_metric="get_winrate"):
    """alpaca_eval's own `evaluate` (what the `alpaca_eval` command runs) on the two files, its API
    annotator replaced by one that returns `preferences` (by instruction)."""
    import sklearn

    ae._alpaca_eval_metrics()  # the package, imported quietly
    from alpaca_eval import main as alpaca_main
    from alpaca_eval.annotators import PairwiseAnnotator

    class Injected(PairwiseAnnotator):
        def __init__(self, **kwargs):
            self.input_keys = ("instruction",)

        def __call__(self, to_annotate, **kwargs):
            return [{**row, "annotator": "injected", "preference": preferences[row["instruction"]]}
                    for row in to_annotate.to_dict("records")]

    with sklearn.config_context(), warnings.catch_warnings():  # alpaca_eval's GLM fit changes both globally
        warnings.simplefilter("ignore", FutureWarning)
        leaderboard, _ = alpaca_main.evaluate(
            model_outputs=str(model_outputs), reference_outputs=str(reference), Annotator=Injected, output_path=None,
            precomputed_leaderboard=None, is_cache_leaderboard=False, is_return_instead_of_print=True,
            fn_metric=fn_metric, sort_by="win_rate",
            metric_kwargs={"save_weights_dir": None} if fn_metric != "get_winrate" else None)
    (row,) = leaderboard.to_dict("records")
    return row


def test_model_outputs_json_is_the_list_alpaca_eval_reads(generated):
    ae._alpaca_eval_metrics()  # the package, imported quietly
    from alpaca_eval import utils

    path = generated["out"] / "model_outputs.json"
    outputs = load(path)
    wanted = load(INSTRUCTIONS)
    assert [(o["instruction"], o["dataset"]) for o in outputs] == [(w["instruction"], w["dataset"]) for w in wanted]
    assert all(set(o) == {"instruction", "output", "generator", "dataset"} and o["generator"] == NAME for o in outputs)
    predictions = {p["id"]: p for p in read_jsonl(generated["out"] / "predictions.jsonl")}
    assert [o["output"] for o in outputs] == [predictions[str(i)]["output"] for i in range(len(wanted))]
    assert all(p["new_tokens"] <= 8 for p in predictions.values())
    frame = utils.load_or_convert_to_dataframe(path)  # how `alpaca_eval --model_outputs` loads it
    assert list(frame["instruction"]) == [w["instruction"] for w in wanted]
    assert utils.get_generator_name(None, frame) == NAME


def test_figures_are_what_alpaca_eval_computes_from_the_same_preferences(generated):
    out = generated["out"]
    metrics = load(out / "metrics.json")
    annotations = load(out / "annotations.json")
    preferences = {a["instruction"]: a["preference"] for a in annotations}
    official = official_evaluate(out / "model_outputs.json", REFERENCE, preferences)
    assert metrics["win_rate"] == pytest.approx(official["win_rate"] / 100)
    assert metrics["n"] == official["n_total"] == 6 and metrics["avg_length"] == official["avg_length"]
    assert metrics["wins"] + metrics["ties"] + metrics["losses"] == 6
    # hermetic: the LC GLM's hub files are not there, and the report says so instead of failing
    assert metrics["lc_win_rate"] is None and "df_gamed.csv" in metrics["unavailable"]["lc_win_rate"]
    assert (metrics["generator"], metrics["reference"]) == (NAME, "reference-fixture")
    assert "| win rate |" in (out / "metrics.md").read_text(encoding="utf-8")
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_reward_model_scores_the_output_and_the_reference_with_its_own_template(generated):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(generated["ranker"])
    model = AutoModelForSequenceClassification.from_pretrained(generated["ranker"]).eval()

    def reward(prompt, response):  # one unpadded pass, as the reward model was trained (empty system turn)
        ids = tokenizer.apply_chat_template([{"role": "system", "content": ""}, {"role": "user", "content": prompt},
                                             {"role": "assistant", "content": response}], tokenize=True,
                                            return_dict=False)
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, 0].item()

    outputs = {o["instruction"]: o["output"] for o in load(generated["out"] / "model_outputs.json")}
    references = {r["instruction"]: r["output"] for r in load(REFERENCE)}
    for row in read_jsonl(generated["out"] / "judgements.jsonl"):
        mine, theirs = reward(row["instruction"], outputs[row["instruction"]]), reward(row["instruction"],
                                                                                       references[row["instruction"]])
        assert (row["output_score"], row["reference_score"]) == pytest.approx((mine, theirs), abs=1e-4)
        assert row["preference"] == (2.0 if mine > theirs else 1.0)


def test_a_rerun_loads_no_model_and_rewrites_nothing(generated, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(ae, "generate_predictions", forbidden)
    monkeypatch.setattr(ae, "open_judge", forbidden)
    files = {p.name: p.stat().st_mtime_ns for p in generated["out"].iterdir() if p.is_file()}
    assert ae.main(generated["argv"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in generated["out"].iterdir() if p.is_file()} == files
    assert "| n | 6 |" in capsys.readouterr().out


class RecordingGenerator(StandInGeneratorBase):
    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def generate(self, prompts, sampling, on_done=None, desc=""):
        self.calls.append((list(prompts), sampling))
        for index in range(len(prompts)):
            on_done(index, Generated(f"  answer {index}<end_of_turn>", 3, True))


def test_each_instruction_is_one_user_turn_in_the_chat_template_sampled_as_alpaca_eval_samples_sppo(
        tmp_path, tiny_model, monkeypatch):
    from transformers import AutoTokenizer

    import recipekit.generation.eval_runner as runner

    recorder = RecordingGenerator(AutoTokenizer.from_pretrained(tiny_model("gemma2")))
    monkeypatch.setattr(runner, "open_generator", lambda args, log_dir: recorder)
    assert ae.main(["--model", stand_in_model(tmp_path, "policy"), "--data", str(INSTRUCTIONS), "--out", str(tmp_path), "--limit", "2"]) == 0
    ((prompts, sampling),) = recorder.calls
    assert prompts == [f"<bos><start_of_turn>user\n{w['instruction']}<end_of_turn>\n<start_of_turn>model\n"
                       for w in load(INSTRUCTIONS)[:2]]
    assert (sampling.do_sample, sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (True, 0.7, 0.9, 2048)
    assert [o["output"] for o in load(tmp_path / "model_outputs.json")] == ["answer 0", "answer 1"]
    assert {o["generator"] for o in load(tmp_path / "model_outputs.json")} == {"policy"}


# ---- the judges and the win rate, without models ----

class KnownJudge(ae.LocalJudge):
    """Returns a fixed preference per instruction and records what it was asked."""

    name = "known"

    def __init__(self, preferences):
        self.preferences, self.asked = preferences, []

    def compare(self, instructions, outputs, references):
        self.asked.extend(zip(instructions, outputs, references))
        return [{"preference": self.preferences[i]} for i in instructions]


def outputs_file(path, outputs, generator="model-m", instructions=None):
    rows = [{"instruction": i, "output": o, "generator": generator, "dataset": "fixture"}
            for i, o in zip(instructions or [r["instruction"] for r in load(REFERENCE)], outputs)]
    return write_json(path, rows)


def test_win_rate_counts_ties_as_half_and_leaves_out_unjudged_pairs(tmp_path):
    reference = load(REFERENCE)
    instructions = [r["instruction"] for r in reference]
    outputs = ["better", "worse", "as good", "better again", "unparsed", reference[5]["output"]]
    judge = KnownJudge(dict(zip(instructions, [2.0, 1.0, 1.5, 2.0, None])))
    model_outputs = outputs_file(tmp_path / "model_outputs.json", outputs)
    assert ae.main(["--score-only", str(model_outputs), "--reference", str(REFERENCE), "--judge-model", stand_in_model(tmp_path, "judge"),
                    "--out", str(tmp_path / "eval")], judge=judge) == 0
    metrics = load(tmp_path / "eval" / "metrics.json")
    # 2 wins, 1 loss, 2 ties (one judged, one identical outputs); the unparsed verdict is no judgement
    assert metrics["win_rate"] == pytest.approx((2 + 0.5 * 2) / 5)
    assert (metrics["n"], metrics["wins"], metrics["ties"], metrics["losses"], metrics["unjudged"]) == (5, 2, 2, 1, 1)
    assert [a for a, _, _ in judge.asked] == instructions[:5]  # identical outputs tie without asking
    assert judge.asked[0] == (instructions[0], "better", reference[0]["output"])  # (output, reference), not swapped
    assert [a["preference"] for a in load(tmp_path / "eval" / "annotations.json")] == [2.0, 1.0, 1.5, 2.0, None, 1.5]
    official = official_evaluate(model_outputs, REFERENCE, {i: p for i, p in zip(instructions, [2, 1, 1.5, 2, None, 1.5])})
    assert official["win_rate"] / 100 == pytest.approx(metrics["win_rate"]) and official["n_total"] == 5


def test_judging_resumes_after_an_interruption(tmp_path):
    instructions = [r["instruction"] for r in load(REFERENCE)]
    model_outputs = outputs_file(tmp_path / "model_outputs.json", [f"answer {i}" for i in range(6)])

    class Interrupted(KnownJudge):
        def compare(self, instructions, outputs, references):
            if self.asked:
                raise KeyboardInterrupt
            return super().compare(instructions, outputs, references)

    argv = ["--score-only", str(model_outputs), "--reference", str(REFERENCE), "--judge-model", stand_in_model(tmp_path, "judge"),
            "--chunk-size", "4", "--out", str(tmp_path / "eval")]
    with pytest.raises(KeyboardInterrupt):
        ae.main(argv, judge=Interrupted(dict.fromkeys(instructions, 2.0)))
    assert len(read_jsonl(tmp_path / "eval" / "judgements.jsonl")) == 4
    rest = KnownJudge(dict.fromkeys(instructions, 1.0))
    assert ae.main(argv, judge=rest) == 0
    assert [i for i, _, _ in rest.asked] == instructions[4:]
    assert load(tmp_path / "eval" / "metrics.json")["win_rate"] == pytest.approx(4 / 6)


def test_the_pairwise_judge_asks_both_orders_and_keeps_only_swap_consistent_verdicts():
    def judge(requests):
        replies = []
        for instruction, first, second in requests:
            if instruction == "biased":
                replies.append("Verdict: A")  # follows the position
            elif instruction == "broken":
                replies.append("I cannot decide.")
            else:
                replies.append(f"Verdict: {'A' if 'good' in first else 'B'}")
        return replies

    seen = []
    pairwise = ae.PairwiseJudge(lambda requests: seen.extend(requests) or judge(requests), "fake")
    verdicts = pairwise.compare(["q1", "q2", "biased", "broken"], ["good", "bad", "x", "x"], ["bad", "good", "y", "y"])
    assert [v["preference"] for v in verdicts] == [2.0, 1.0, 1.5, None]
    assert seen[:2] == [("q1", "good", "bad"), ("q1", "bad", "good")]
    assert verdicts[2]["verdict"] == "inconsistent: position A in both orders"


def test_bad_inputs_stop_with_file_line_and_field(tmp_path, capsys):
    broken = write_json(tmp_path / "instructions.json", [{"instruction": "fine"}, {"dataset": "x"}])
    assert ae.main(["--model", stand_in_model(tmp_path, "policy"), "--data", str(broken), "--out", str(tmp_path / "a")]) == 2
    assert f"{broken}:2: field 'instruction': missing" in capsys.readouterr().err
    reference = write_json(tmp_path / "reference.json", [{"instruction": "q", "output": 3}])
    outputs = outputs_file(tmp_path / "outputs.json", ["a"], instructions=["q"])
    assert ae.main(["--score-only", str(outputs), "--reference", str(reference), "--out", str(tmp_path / "b")]) == 2
    assert f"{reference}:1: field 'output': missing or not a string" in capsys.readouterr().err
    same_name = outputs_file(tmp_path / "same.json", ["a different answer"], generator="reference-fixture",
                             instructions=[load(REFERENCE)[0]["instruction"]])
    assert ae.main(["--score-only", str(same_name), "--reference", str(REFERENCE), "--out", str(tmp_path / "c")]) == 2
    assert "give the model another --name" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "metrics.json").exists()


# ---- the length-controlled win rate: alpaca_eval's GLM ----

@pytest.fixture
def gamed_baselines(tmp_path, monkeypatch):
    """Stand-in for tatsu-lab/alpaca_eval's df_gamed.csv: a verbose and a concise variant of the
    baseline on each of the 805 instructions, judged by a judge that prefers the longer answer."""
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate

    rows = []
    for model, sign in (("verbose", -1), ("concise", 1)):
        for index in range(ae.ALPACA_EVAL_SIZE):
            delta = sign * (0.5 + (index % 7) / 7)  # (baseline length - its length) / std: < 0 when longer
            rows.append({"model": model, "index": index, "instruction_difficulty": index / 805 - 0.5,
                         "preference": 1 / (1 + math.exp(2 * math.tanh(delta))), "std_delta_len": delta,
                         "not_gamed_baseline": False})
    path = tmp_path / "df_gamed.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(path))


def length_explains_every_win(n=40):
    """The model is longer than the reference on 3 instructions in 4, and wins exactly those."""
    rows, preferences = [], {}
    for i in range(n):
        longer = i % 4 < 3
        rows.append({"instruction": f"task {i}", "output": "m" * ((60 + 5 * (i % 5)) if longer else (20 + 3 * (i % 5))),
                     "generator": "model-m", "dataset": "fixture"})
        preferences[f"task {i}"] = 2.0 if longer else 1.0
    reference = [{"instruction": r["instruction"], "output": "r" * 40, "generator": "ref", "dataset": "fixture"}
                 for r in rows]
    return rows, reference, preferences


def test_lc_win_rate_is_alpaca_evals_own(tmp_path, gamed_baselines):
    rows, reference, preferences = length_explains_every_win()
    model_outputs = write_json(tmp_path / "model_outputs.json", rows)
    reference_path = write_json(tmp_path / "reference.json", reference)
    assert ae.main(["--score-only", str(model_outputs), "--reference", str(reference_path), "--judge-model", stand_in_model(tmp_path, "judge"),
                    "--out", str(tmp_path / "eval")], judge=KnownJudge(preferences)) == 0
    metrics = load(tmp_path / "eval" / "metrics.json")
    official = official_evaluate(model_outputs, reference_path, preferences, "get_length_controlled_winrate")
    assert metrics["lc_win_rate"] == pytest.approx(official["length_controlled_winrate"] / 100, abs=1e-9)
    assert metrics["lc_win_rate_se"] == pytest.approx(official["lc_standard_error"] / 100, abs=1e-9)
    assert metrics["win_rate"] == pytest.approx(0.75) and metrics["unavailable"] == {}
    annotations = load(tmp_path / "eval" / "annotations.json")
    assert sum(a["glm_preference"] for a in annotations) / len(annotations) == pytest.approx(metrics["lc_win_rate"])


def test_wins_that_length_explains_count_for_little_once_length_is_controlled(gamed_baselines):
    rows, reference, preferences = length_explains_every_win()
    annotations = [{"instruction": r["instruction"], "output_1": ref["output"], "generator_1": "ref",
                    "output_2": r["output"], "generator_2": "model-m", "annotator": "known",
                    "preference": preferences[r["instruction"]]} for r, ref in zip(rows, reference)]
    rates = ae.win_rates(annotations)
    assert rates["win_rate"] == 0.75
    assert 0.45 < rates["lc_win_rate"] < 0.65  # mostly explained away: near a coin flip


def test_a_model_against_its_own_outputs_is_exactly_even(tmp_path):
    """alpaca_eval gives the reference 50 % by construction; no hub file is needed for it."""
    assert ae.main(["--score-only", str(REFERENCE), "--reference", str(REFERENCE), "--judge-model", stand_in_model(tmp_path, "judge"),
                    "--out", str(tmp_path)], judge=KnownJudge({})) == 0
    metrics = load(tmp_path / "metrics.json")
    assert (metrics["win_rate"], metrics["lc_win_rate"], metrics["ties"]) == (0.5, 0.5, 6)


# ---- the card's table ----

def test_compare_puts_base_and_iterations_side_by_side(tmp_path, capsys):
    runs = []
    for name, wr, lc, length in (("base", 0.40, None, 1500), ("iter-1", 0.45, 0.487, 1669), ("iter-2", 0.5, 0.5093, 1759)):
        metrics = {"generator": name, "reference": "gpt4_turbo", "judge": "reward-model:rm", "n": 805, "wins": 300,
                   "ties": 5, "losses": 500, "win_rate": wr, "lc_win_rate": lc, "avg_length": length,
                   "unavailable": {} if lc else {"lc_win_rate": "no hub"}}
        (tmp_path / name).mkdir()
        runs.append(write_json(tmp_path / name / "metrics.json", metrics))
    assert ae.main(["--compare", *map(str, runs), "--out", str(tmp_path / "table")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[:6] == [
        "|  | base | iter-1 | iter-2 |",
        "|---|---|---|---|",
        "| LC win rate | n/a | 48.70 % | 50.93 % |",
        "| win rate | 40.00 % | 45.00 % | 50.00 % |",
        "| avg length (characters) | 1500 | 1669 | 1759 |",
        "| n | 805 | 805 | 805 |",
    ]
    assert "Unavailable: lc_win_rate: no hub" in table
    assert (tmp_path / "table" / "comparison.md").read_text(encoding="utf-8") + "\n" == table
    assert set(load(tmp_path / "table" / "comparison.json")) == {"base", "iter-1", "iter-2"}
    assert (tmp_path / "table" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ae.main(["--compare", *map(str, runs[:2]), "--names", "Base", "Iter 1"]) == 0
    assert capsys.readouterr().out.startswith("|  | Base | Iter 1 |")
