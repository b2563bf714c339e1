"""eval/run_reward_eval.py: Axolotl-identical inputs, a hand-built scorer with known winners, ties, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import run_script

from recipekit.paths import REPO_ROOT
from recipekit.reward.scoring import main, reward_input_ids
from recipekit.testing import FIXTURES_DIR

SCRIPT = REPO_ROOT / "eval" / "run_reward_eval.py"
EVAL_PAIRS = FIXTURES_DIR / "prepared" / "reward_ja_eval.jsonl"
CONTENT_ONLY_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("system", ["", "あなたは親切なアシスタントです。"])
def test_inputs_equal_axolotls_bradley_terry_tokenisation(tiny_model, family, system):
    from axolotl.prompt_strategies.bradley_terry import load
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model(family))
    row = {"system": system, "input": "雨の日の洗濯物の乾かし方は？",
           "chosen": "除湿機と扇風機を使い、部屋干しすると早く乾きます。" * 3, "rejected": "わかりません。"}
    for max_length in (4096, 40):
        cfg = DictDefault(chat_template="tokenizer_default", sequence_len=max_length, reward_model=True,
                          train_on_inputs=False)
        strategy = load("chat_template", tokenizer, cfg, {"type": "bradley_terry.chat_template"})
        assert strategy is not None
        expected = strategy.tokenize_prompt(dict(row))
        for side in ("chosen", "rejected"):
            ours = reward_input_ids(tokenizer, row["input"], row[side], system, max_length)
            assert ours == expected[f"{side}_ids"], (family, side, max_length)
    assert len(ours) <= 40


@pytest.fixture(scope="module")
def known_scorer(tiny_model, tmp_path_factory):
    """A Llama reward model whose score is sign-like in the last token: '!' > other > '?'.

    Attention and MLP outputs are zeroed, so the final hidden state is the last token's
    embedding; embeddings are [a, 1, …, 1] and the score head reads dimension 0, so
    the score is a / rms([a, 1, …, 1]): +3 for tokens ending in '!', -3 for '?', else 0.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("models") / "known"
    source = tiny_model("llama", "seq_cls")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        embeddings.fill_(1.0)
        for token_id in range(embeddings.shape[0]):
            text = tokenizer.decode([token_id])
            embeddings[token_id, 0] = 3.0 if text.endswith("!") else -3.0 if text.endswith("?") else 0.0
        model.score.weight.zero_()
        model.score.weight[0, 0] = 1.0
    tokenizer.chat_template = CONTENT_ONLY_TEMPLATE
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


KNOWN_PAIRS = [  # (dataset, prompt, chosen, rejected, chosen wins?)
    ("ds_a", "質問", "いいですね!", "そうですか?", True),
    ("ds_a", "長めの質問です、よろしくお願いします", "はい。", "ちがう?", True),
    ("ds_b", "q", "really?", "yes!", False),
    ("ds_b", "同点になる質問", "すごい!", "とてもすごい!", False),  # a tie counts as wrong
]


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_known_winners_and_ties(known_scorer, tmp_path, batch_size):
    data = write_lines(tmp_path / "pairs.jsonl", [{"dataset": d, "prompt": p, "chosen": c, "rejected": r}
                                                  for d, p, c, r, _ in KNOWN_PAIRS])
    out = tmp_path / "out"
    assert main(["--model", str(known_scorer), "--data", str(data), "--out", str(out), "--batch-size", batch_size,
                 "--dtype", "float32"]) == 0
    scored = [json.loads(line) for line in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["correct"] for s in scored] == [wins for *_, wins in KNOWN_PAIRS]
    assert scored[0]["chosen_score"] == pytest.approx(3 / ((9 + 63) / 64) ** 0.5, rel=1e-4)
    assert scored[0]["rejected_score"] == pytest.approx(-scored[0]["chosen_score"], rel=1e-4)
    assert scored[1]["chosen_score"] == pytest.approx(0.0, abs=1e-6)
    assert scored[3]["chosen_score"] == scored[3]["rejected_score"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == 0.5 and metrics["n"] == 4 and metrics["ties"] == 1
    assert metrics["per_dataset"] == {  # rows without a split count under the file's name
        "ds_a": {"accuracy": 1.0, "n": 2, "split_mean_accuracy": 1.0, "per_split": {"pairs": {"accuracy": 1.0, "n": 2}}},
        "ds_b": {"accuracy": 0.0, "n": 2, "split_mean_accuracy": 0.0, "per_split": {"pairs": {"accuracy": 0.0, "n": 2}}}}
    table = (out / "metrics.md").read_text()
    assert table.splitlines()[0] == "|  | ds_a | ds_a pooled | ds_b | ds_b pooled | all |"
    assert "| known | 1.0000 | 1.0000 | 0.0000 | 0.0000 | 0.5000 |" in table


SPLIT_PAIRS = [  # (dataset, split or None, chosen wins?): HelpSteer3 train 2 of 3, validation 1 of 1
    ("helpsteer3", "train", True), ("helpsteer3", "train", True), ("helpsteer3", "train", False),
    ("helpsteer3", "validation", True),
    ("llm-jp-chatbot-arena", None, True), ("llm-jp-chatbot-arena", None, False),
]


def test_the_cards_figure_is_the_mean_of_the_split_accuracies_beside_the_pooled_one(known_scorer, tmp_path, capsys):
    rows = []
    for index, (dataset, split, wins) in enumerate(SPLIT_PAIRS):
        good, bad = f"はい{index}!", f"いいえ{index}?"
        row = {"dataset": dataset, "prompt": f"質問{index}", "chosen": good if wins else bad,
               "rejected": bad if wins else good}
        rows.append({**row, "split": split} if split else row)  # arena rows as older prep wrote them
    data = write_lines(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    assert main(["--model", str(known_scorer), "--data", str(data), "--out", str(out), "--dtype", "float32"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    card_helpsteer3 = (2 / 3 + 1 / 1) / 2
    assert metrics["per_dataset"]["helpsteer3"] == {
        "accuracy": 3 / 4, "n": 4, "split_mean_accuracy": card_helpsteer3,
        "per_split": {"train": {"accuracy": 2 / 3, "n": 3}, "validation": {"accuracy": 1.0, "n": 1}}}
    assert metrics["per_dataset"]["llm-jp-chatbot-arena"]["per_split"] == {"pairs": {"accuracy": 0.5, "n": 2}}
    assert metrics["card"] == {"HelpSteer3": card_helpsteer3, "llm-jp-chatbot-arena": 0.5}
    assert metrics["accuracy"] == 4 / 6 and metrics["n"] == 6
    assert (out / "metrics.md").read_text().splitlines() == [
        "|  | HelpSteer3 | HelpSteer3 pooled | llm-jp-chatbot-arena | llm-jp-chatbot-arena pooled | all |",
        "|---|---|---|---|---|---|",
        "| known | 0.8333 | 0.7500 | 0.5000 | 0.5000 | 0.6667 |",
        "| n | 3 + 1 | 4 | 2 | 2 | 6 |"]
    old = write_lines(tmp_path / "old_metrics.json", [{"accuracy": 0.5, "n": 4, "ties": 0,
                                                       "per_dataset": {"helpsteer3": {"accuracy": 0.5, "n": 4}}}])
    capsys.readouterr()
    assert main(["--compare", str(out / "metrics.json"), str(old), "--names", "new", "old"]) == 0
    assert "| old | n/a | 0.5000 | n/a | n/a | 0.5000 |" in capsys.readouterr().out  # written before splits


def test_cli_on_the_tiny_reward_model(tiny_model, tmp_path):
    out = tmp_path / "eval"
    done = run_script(SCRIPT, "--model", tiny_model("llama", "seq_cls"), "--data", EVAL_PAIRS, "--out", out,
                      "--batch-size", 5, "--name", "tiny")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in EVAL_PAIRS.read_text(encoding="utf-8").splitlines()]
    assert metrics["n"] == len(rows)
    assert {k: v["n"] for k, v in metrics["per_dataset"].items()} == {
        d: sum(r["dataset"] == d for r in rows) for d in {r["dataset"] for r in rows}}
    scored = [json.loads(line) for line in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert metrics["accuracy"] == sum(s["chosen_score"] > s["rejected_score"] for s in scored) / len(scored)
    assert "| tiny |" in done.stdout and "reward eval" in done.stderr  # the table and the progress bar
    assert json.loads((out / "manifest.json").read_text())["inputs"][str(EVAL_PAIRS)]
    compared = run_script(SCRIPT, "--compare", out / "metrics.json", out / "metrics.json", "--names", "lr5e-6", "lr1e-6")
    assert "| lr5e-6 |" in compared.stdout and "| lr1e-6 |" in compared.stdout


def test_bad_pair_names_file_line_and_field(known_scorer, tmp_path, capsys):
    for bad, field in (({"prompt": "p", "chosen": "a!"}, "rejected"), ({"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen"),
                       ({"prompt": "p", "chosen": "a", "rejected": "b", "dataset": ""}, "dataset")):
        data = write_lines(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a!", "rejected": "b?"}, bad])
        out = tmp_path / "out"
        assert main(["--model", str(known_scorer), "--data", str(data), "--out", str(out)]) == 2
        assert f"{data}:2: field '{field}'" in capsys.readouterr().err
        assert not out.exists()


def test_checkpoints_that_cannot_score_are_refused(known_scorer, tiny_model, tmp_path, capsys):
    data = write_lines(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a!", "rejected": "b?"}])
    no_template = tmp_path / "no_template"
    shutil.copytree(known_scorer, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    assert main(["--model", str(no_template), "--data", str(data), "--out", str(tmp_path / "o1")]) == 2
    assert "no chat template" in capsys.readouterr().err
    assert main(["--model", str(tiny_model("llama")), "--data", str(data), "--out", str(tmp_path / "o2")]) == 2
    assert "not a sequence-classification checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
