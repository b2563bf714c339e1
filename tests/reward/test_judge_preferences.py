"""dataset_prep/judge_preferences.py: strict verdicts, swap consistency, bookkeeping, the tiny model as judge."""

from __future__ import annotations

import json

import pytest

from recipekit.reward.judge import VerdictError, judge_pairs, main, parse_verdict

ITEMS = [
    {"id": "p1", "prompt": "朝ごはんは？", "responses": ["納豆ご飯とみそ汁がおすすめです。", "パン。", "食べなくても大丈夫です。"]},
    {"id": "p2", "prompt": "敬語のこつは？", "responses": ["例文を声に出して練習します。", "不要です。"]},
]


def longer_wins(requests):
    return [f"Longer is better here.\nVerdict: {'A' if len(a) > len(b) else 'B'}" for _, a, b in requests]


def always_a(requests):
    return ["Verdict: A" for _ in requests]


@pytest.mark.parametrize("reply, verdict", [("Verdict: A", "A"), ("reasoning...\n\nVerdict: B\n", "B"),
                                            ("x\nVerdict: A<end_of_turn>", "A")])
def test_parse_verdict_accepts(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize("reply", ["", "A", "Verdict: C", "Verdict: A.", "verdict: a", "Verdict: A\nmore text",
                                   "Verdict: B\nVerdict: A", "The verdict is A"])
def test_parse_verdict_is_strict(reply):
    with pytest.raises(VerdictError):
        parse_verdict(reply)


def test_consistent_judge_keeps_every_pair_with_the_winner_chosen():
    outcome = judge_pairs(ITEMS, longer_wins, system="")
    assert outcome.pairs == 4 and outcome.inconsistent == 0 and outcome.parse_failures == 0
    assert len(outcome.rows) == 4 and not outcome.rejects
    for row in outcome.rows:
        assert set(row) == {"system", "input", "chosen", "rejected"}
        assert len(row["chosen"]) > len(row["rejected"])


def test_position_biased_judge_loses_every_pair():
    outcome = judge_pairs(ITEMS, always_a)
    assert outcome.rows == [] and outcome.inconsistent == outcome.pairs == 4
    assert all("inconsistent" in r["reason"] and r["replies"] == ["Verdict: A", "Verdict: A"] for r in outcome.rejects)


def test_both_orders_are_asked_and_parse_failures_counted():
    seen = []

    def half_broken(requests):
        seen.extend(requests)
        return [("Verdict: A" if len(a) > len(b) else "Verdict: B") if i % 4 else "A is better"
                for i, (_, a, b) in enumerate(requests)]

    outcome = judge_pairs(ITEMS, half_broken)
    assert seen[0] == (ITEMS[0]["prompt"], ITEMS[0]["responses"][0], ITEMS[0]["responses"][1])
    assert seen[1] == (ITEMS[0]["prompt"], ITEMS[0]["responses"][1], ITEMS[0]["responses"][0])
    # requests 0 and 4 (the first order of pairs 1 and 3) are unparseable
    assert outcome.parse_failures == 2 and outcome.unparsed_replies == 2 and len(outcome.rows) == 2
    assert all(r["reason"].startswith("judge reply not parsed: order first-second") for r in outcome.rejects)


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.jsonl"
    rows = [*ITEMS, {"prompt": "同じ答え", "responses": ["はい。", "はい。"]}, {"prompt": "x", "responses": "not a list"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_command_writes_bradley_terry_rows_that_axolotl_tokenises(candidates, tmp_path, tiny_model, capsys):
    from axolotl.prompt_strategies.bradley_terry import load
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    out, rejects = tmp_path / "train.jsonl", tmp_path / "rejects.jsonl"
    assert main(["--input", str(candidates), "--output", str(out), "--rejects", str(rejects), "--skip-invalid"],
                judge=longer_wins) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4
    rejected = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["field"]) for r in rejected] == [(4, "responses")]
    printed = capsys.readouterr().out
    assert "pairs judged: 4" in printed and "dropped (fewer than two distinct responses): 1" in printed
    strategy = load("chat_template", AutoTokenizer.from_pretrained(tiny_model("llama", "seq_cls")),
                    DictDefault(chat_template="tokenizer_default", sequence_len=512, reward_model=True),
                    {"type": "bradley_terry.chat_template"})
    for row in rows:
        assert strategy.tokenize_prompt(dict(row))["chosen_ids"]


def test_bad_row_stops_the_command_with_its_location(candidates, tmp_path, capsys):
    out = tmp_path / "train.jsonl"
    assert main(["--input", str(candidates), "--output", str(out)], judge=longer_wins) == 2
    assert f"{candidates}:4: field 'responses'" in capsys.readouterr().err
    assert not out.exists()


def test_no_consistent_pair_is_an_error_with_rejects_kept(tmp_path, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps(ITEMS[1], ensure_ascii=False) + "\n", encoding="utf-8")
    out, rejects = tmp_path / "train.jsonl", tmp_path / "rejects.jsonl"
    assert main(["--input", str(data), "--output", str(out), "--rejects", str(rejects)], judge=always_a) == 2
    assert "no consistent pair" in capsys.readouterr().err
    assert not out.exists() and "inconsistent" in rejects.read_text(encoding="utf-8")


def test_tiny_model_as_judge_accounts_for_every_pair(tmp_path, tiny_model, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps(ITEMS[0], ensure_ascii=False) + "\n", encoding="utf-8")
    out, rejects = tmp_path / "train.jsonl", tmp_path / "rejects.jsonl"
    code = main(["--input", str(data), "--output", str(out), "--rejects", str(rejects), "--judge",
                 str(tiny_model("gemma3")), "--max-new-tokens", "4", "--batch-size", "6"])
    printed = capsys.readouterr()
    assert "pairs judged: 3" in printed.out
    kept = len(out.read_text(encoding="utf-8").splitlines()) if code == 0 else 0
    assert code in (0, 2) and (code == 0) == out.exists()
    assert kept + len(rejects.read_text(encoding="utf-8").splitlines()) == 3
