"""PairRM, the SPPO card's ranker, through the released llm-blender on a tiny PairRM.

The tiny PairRM (recipekit/testing/tiny_pairrm.py) is llm-blender's own DebertaV2PairRM with
random weights, which llm-blender's `Blender.loadranker` loads as it loads llm-blender/PairRM.
Its scores are checked against comparison logits computed here, one unpadded forward pass of
DebertaV2PairRM per ordered pair; the driver's pairs against uclaml/SPPO's compute_prob.py formula.
"""

from __future__ import annotations

import json
import sys

import pytest
from helpers import read_jsonl
from test_sppo_driver import HOLDOUT, LIMIT, PROMPTS, K, assert_pairs_follow_bradley_terry, driver_argv

from recipekit.sppo import driver
from recipekit.sppo.prompt_limit import chat_prompt
from recipekit.sppo.rankers import RankerUnavailable, import_llm_blender, make_ranker

PROMPT_ROWS = ["Name a colour.", "Write one line about the sea."]
RESPONSES = [["Red.", "Blue is the colour of the sky.", "I like turtles.", "no"],
             ["Waves.", "The sea is wide and deep and grey.", "sea sea sea", "A line."]]


@pytest.fixture(scope="module")
def pairrm_model(tiny_pairrm):
    """llm-blender's DebertaV2PairRM with the checkpoint's weights, loaded without llm-blender's loader."""
    import torch
    from transformers import AutoTokenizer, DebertaV2Config

    import_llm_blender()
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM

    model = DebertaV2PairRM(DebertaV2Config.from_pretrained(tiny_pairrm / "backbone")).eval()
    model.load_state_dict(torch.load(tiny_pairrm / "pytorch_model.bin"))
    return model, AutoTokenizer.from_pretrained(tiny_pairrm / "backbone")


def comparison_logit(pairrm_model, source: str, left: str, right: str) -> float:
    """PairRM's logit for `left` beating `right`: [CLS] <|source|>… [SEP] [CLS] <|candidate1|>… [SEP]
    [CLS] <|candidate2|>… [SEP], the layout of llm-blender's collator and CrossCompareReranker."""
    import torch

    model, tokenizer = pairrm_model
    ids = [i for text in ("<|source|>" + source, "<|candidate1|>" + left, "<|candidate2|>" + right)
           for i in tokenizer.encode(text)]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits.item()


def pairrm_scores(pairrm_model, source: str, candidates: list[str]) -> list[float]:
    """Each candidate's mean over all j of L[i][j] - L[j][i] (L[i][i] = 0): rank(..., return_scores=True)."""
    logit = {(i, j): comparison_logit(pairrm_model, source, a, b) if i != j else 0.0
             for i, a in enumerate(candidates) for j, b in enumerate(candidates)}
    k = len(candidates)
    return [sum(logit[i, j] - logit[j, i] for j in range(k)) / k for i in range(k)]


def paper_instruction(tokenizer, prompt: str) -> str:
    """uclaml/SPPO scripts/rank.py's apply_template: the rendering of [user, assistant "None"] cut at "None"."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": "None"}],
                                         tokenize=False).split("None")[0]


@pytest.fixture(scope="module")
def bare_ranker(tiny_pairrm):
    return make_ranker("pairrm", str(tiny_pairrm), batch_size=2)


def test_pairrm_scores_each_prompts_k_responses_with_its_comparison_logits(bare_ranker, pairrm_model):
    scores = bare_ranker.score(PROMPT_ROWS, RESPONSES)
    assert [len(row) for row in scores] == [len(r) for r in RESPONSES]
    for prompt, responses, row in zip(PROMPT_ROWS, RESPONSES, scores):
        assert row == pytest.approx(pairrm_scores(pairrm_model, prompt, responses), abs=1e-5)
        assert max(row) - min(row) > 0.05  # random weights, yet the responses are told apart


def test_swapping_two_candidates_swaps_their_scores(bare_ranker):
    (before,) = bare_ranker.score(PROMPT_ROWS[:1], RESPONSES[:1])
    swapped = [RESPONSES[0][2], RESPONSES[0][1], RESPONSES[0][0], RESPONSES[0][3]]
    (after,) = bare_ranker.score(PROMPT_ROWS[:1], [swapped])
    assert after == pytest.approx([before[2], before[1], before[0], before[3]], abs=1e-5)


def test_loadranker_loads_every_weight_of_the_checkpoint(bare_ranker, tiny_pairrm):
    import torch

    saved = torch.load(tiny_pairrm / "pytorch_model.bin")
    loaded = bare_ranker.blender.ranker.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)


def test_pairrm_reads_the_prompt_as_the_policy_was_prompted(tiny_pairrm, tiny_model, pairrm_model, bare_ranker):
    from transformers import AutoTokenizer

    policy = tiny_model("gemma2")
    ranker = make_ranker("pairrm", str(tiny_pairrm), policy=str(policy))
    shown, rank = [], ranker.blender.rank
    ranker.blender.rank = lambda sources, *args, **kwargs: shown.extend(sources) or rank(sources, *args, **kwargs)
    scores = ranker.score(PROMPT_ROWS, RESPONSES)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    assert shown == [paper_instruction(tokenizer, p) for p in PROMPT_ROWS]
    assert shown[0] == "<bos><start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n"
    for source, responses, row in zip(shown, RESPONSES, scores):
        assert row == pytest.approx(pairrm_scores(pairrm_model, source, responses), abs=1e-5)
    assert scores[0] != pytest.approx(bare_ranker.score(PROMPT_ROWS, RESPONSES)[0], abs=1e-3)  # the template is read
    # rank.py's cut at the first "None" would end this prompt after "Is"; the reply's own place keeps it whole
    assert ranker.instructions(["Is None a value?"]) == [chat_prompt(tokenizer, "Is None a value?")]
    assert "Is None a value?" in ranker.instructions(["Is None a value?"])[0]


def test_the_bridge_adds_back_only_what_transformers_5_removed(bare_ranker):
    import transformers.utils.hub
    from huggingface_hub import constants

    assert transformers.utils.hub.TRANSFORMERS_CACHE == constants.HF_HUB_CACHE
    tokenizer = bare_ranker.blender.ranker_tokenizer
    texts = ["<|source|>a short one", "<|source|>and a longer source text"]
    encoded = tokenizer.batch_encode_plus(texts, max_length=6, padding="max_length", truncation=True,
                                          return_tensors="pt")
    assert encoded["input_ids"].tolist() == tokenizer(texts, max_length=6, padding="max_length", truncation=True,
                                                      return_tensors="pt")["input_ids"].tolist()
    assert encoded["input_ids"].shape == (2, 6)


def test_a_pairrm_checkpoint_that_is_not_there_is_a_clear_error(tmp_path):
    with pytest.raises(RankerUnavailable, match=f"cannot load {tmp_path / 'PairRM'}"):
        make_ranker("pairrm", str(tmp_path / "PairRM"))


def test_pairrm_without_llm_blender_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_blender", None)  # as if not installed
    with pytest.raises(RankerUnavailable, match="needs the llm-blender package, which is not installed") as err:
        make_ranker("pairrm", None)
    assert "pip install --no-deps -r requirements-nodeps.txt" in str(err.value)


def test_an_llm_blender_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    package = tmp_path / "llm_blender"
    package.mkdir()
    (package / "__init__.py").write_text("from transformers.utils.hub import A_NAME_NO_RELEASE_HAS\n",
                                         encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "llm_blender", raising=False)
    with pytest.raises(RankerUnavailable, match="llm-blender failed to import .*A_NAME_NO_RELEASE_HAS"):
        make_ranker("pairrm", None)


# ---- one driver iteration ranked by PairRM ----

@pytest.fixture(scope="module")
def pairrm_iteration(tiny_model, tiny_pairrm, tmp_path_factory):
    out = tmp_path_factory.mktemp("sppo-pairrm")
    policy = tiny_model("gemma2")
    assert driver.main(driver_argv(out, policy, tiny_pairrm, kind="pairrm")) == 0
    return {"out": out, "dir": out / "iter_1", "policy": str(policy)}


@pytest.mark.train
def test_the_driver_ranks_with_pairrm_on_the_policys_chat_prompts(pairrm_iteration, pairrm_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pairrm_iteration["policy"])
    scored = read_jsonl(pairrm_iteration["dir"] / "scored.jsonl")
    prompts = [json.loads(line)["prompt"] for line in PROMPTS.read_text(encoding="utf-8").splitlines()][:LIMIT]
    assert [r["prompt"] for r in scored] == prompts[:-HOLDOUT] and {len(r["scores"]) for r in scored} == {K}
    for row in scored:
        source = paper_instruction(tokenizer, row["prompt"])
        assert row["scores"] == pytest.approx(pairrm_scores(pairrm_model, source, row["responses"]), abs=1e-5)
    for row in read_jsonl(pairrm_iteration["dir"] / "winrate.jsonl"):
        new, previous = pairrm_scores(pairrm_model, paper_instruction(tokenizer, row["prompt"]),
                                      [row["new"], row["previous"]])
        assert (row["new_score"], row["previous_score"]) == pytest.approx((new, previous), abs=1e-5)


@pytest.mark.train
def test_the_pairs_win_rates_follow_from_the_pairrm_scores(pairrm_iteration):
    assert_pairs_follow_bradley_terry(pairrm_iteration["dir"])
    manifest = json.loads((pairrm_iteration["dir"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stages"]["rank"]["ranker"]["ranker"] == "pairrm"
    assert manifest["stages"]["train"]["logged_steps"] > 0


@pytest.mark.train
def test_alpaca_eval_judged_by_pairrm_reads_the_bare_instruction(pairrm_iteration, pairrm_model, tiny_pairrm):
    folder = pairrm_iteration["dir"] / "alpaca_eval"
    assert json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["judge"] == f"pairrm:{tiny_pairrm}"
    annotations = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    judged = [row for row in read_jsonl(folder / "judgements.jsonl") if not row.get("identical")]
    assert judged
    for row in judged:
        pair = annotations[int(row["id"])]  # output_1: the reference, output_2: the model's
        scores = pairrm_scores(pairrm_model, pair["instruction"], [pair["output_2"], pair["output_1"]])
        assert (row["output_score"], row["reference_score"]) == pytest.approx(tuple(scores), abs=1e-5)
