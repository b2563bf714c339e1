"""The demo's sample data: held-out facts that no training row contains, labels that follow from the rows."""

import json
import re

import pytest

from recipekit.demo import DEMO, SEED
from recipekit.supervisor.prep import parse_judgement
from recipekit.testing.demo_data import HELD_OUT_POOL, TRAIN_POOL, demo_data


@pytest.fixture(scope="module")
def data():
    return demo_data(train=DEMO.train_rows, held_out=DEMO.held_out_rows, stage1=DEMO.stage1_pairs, seed=SEED)


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text, re.IGNORECASE) is not None


def test_no_held_out_product_topic_or_value_occurs_in_any_training_row(data):
    training_text = "\n".join(json.dumps(row, ensure_ascii=False) for row in [*data.stage1_pairs, *data.train_rows])
    leaks = {part for fact in data.held_out_facts for part in (fact.product, fact.topic, fact.value)
             if _mentions(training_text, part)}
    assert not leaks
    # the check itself finds a training fact's parts
    assert _mentions(training_text, data.train_rows[0]["document"].split(":")[1].strip(" ."))


def test_the_pools_share_no_product_topic_or_number():
    assert not set(TRAIN_POOL.products) & set(HELD_OUT_POOL.products)
    assert not {t for t, _ in TRAIN_POOL.topics} & {t for t, _ in HELD_OUT_POOL.topics}
    assert not set(TRAIN_POOL.numbers) & set(HELD_OUT_POOL.numbers)


def test_held_out_rows_hold_both_classes_and_both_kinds_of_wrong_answer(data):
    kinds = [row["kind"] for row in data.held_out_rows]
    assert len(kinds) >= 60
    assert {kinds.count(k) > 0 for k in ("correct", "wrong_value", "no_answer")} == {True}


def test_each_label_follows_from_comparing_the_answer_with_the_document(data):
    for row in [*data.train_rows, *data.held_out_rows]:
        value = row["document"].split(": ", 1)[1].rstrip(".")
        answer = row["transcript"].split("\nBot: ", 1)[1]
        assert (row["label"] == "correct") == _mentions(answer, value), row
        if row["kind"] == "wrong_value":
            assert re.search(r"\d+ (days|weeks|months|years)", answer), row
        judgement = parse_judgement(f"<think>\n{row['think']}\n</think>\n"
                                    + json.dumps({"label": row["label"], "reason": row["reason"]}))
        assert judgement["label"] == row["label"]


def test_the_data_is_the_same_for_the_same_seed(data):
    again = demo_data(train=DEMO.train_rows, held_out=DEMO.held_out_rows, stage1=DEMO.stage1_pairs, seed=SEED)
    assert again == data
    assert demo_data(train=DEMO.train_rows, held_out=DEMO.held_out_rows, stage1=DEMO.stage1_pairs, seed=SEED + 1) != data
