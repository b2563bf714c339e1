"""A recipe on a real pretrained model: `axolotl train`, merge, score, then read the replies.

Every other test trains random-init tiny models, whose replies are noise by design; this
one checks that the pipeline keeps a real language model speaking language. The base is
SmolLM2-135M-Instruct, shipped inside a PyPI wheel (recipekit.testing.pretrained). It is a
Llama-architecture ChatML model, so it runs the Gemma 3 chatbot recipe (LoRA SFT on
Bitext-style rows) with the usual CPU overrides plus its own chat template in place of
Gemma 3's, whose turn tokens it lacks. Slow: about a minute on two cores
(deselect with -m "not real_weights").
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from pathlib import Path

import pytest
from helpers import SMOLLM2_NEW_TOKENS, hub_card
from transformers import AutoTokenizer

from recipekit.chatbot.scoring import main as chatbot_eval_main
from recipekit.checkpoints.merge import main as merge_main
from recipekit.paths import RECIPES_DIR
from recipekit.templates.chat_format import inference_prompt, to_messages
from recipekit.templates.special_tokens import CHAT_SPECIAL_TOKENS, strip_special_tokens
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.pretrained import MODEL_ID, smollm2_path
from recipekit.testing.smoke import cpu_run_overrides, resolve_fixtures, train_with_overrides
from recipekit.training.recipe_config import load_recipe

pytestmark = [pytest.mark.real_weights, pytest.mark.train]

RECIPE = RECIPES_DIR / "cs_chatbot_gemma3_4b.yml"
TEST_ROWS = FIXTURES_DIR / "prepared" / "cs_chatbot_test.jsonl"
STEPS = 6
WORD = re.compile(r"[A-Za-z]+")
ROLE_LINE = re.compile(r"^\s*(system|user|assistant)\s*$", re.MULTILINE)
FUNCTION_WORDS = {"a", "an", "the", "to", "you", "your", "i", "and", "or", "is", "are", "can", "of", "for", "in", "on"}


@pytest.fixture(scope="module")
def base_model() -> Path:
    return smollm2_path()


@pytest.fixture(scope="module")
def tokenizer(base_model):
    return AutoTokenizer.from_pretrained(base_model)


@pytest.fixture(scope="module")
def pipeline(base_model, smollm2_scored_by_transformers, tmp_path_factory):
    """Train the recipe on the real model, merge the adapter, score base and merged model."""
    work = tmp_path_factory.mktemp("real_weights")
    config = load_recipe(RECIPE)
    overrides = cpu_run_overrides(config, base_model=str(base_model), dataset_paths=resolve_fixtures(RECIPE, config),
                                  workdir=work, steps=STEPS, sequence_len=128)
    # the model's own ChatML template; replies end with its end-of-turn token, as Gemma's end with <end_of_turn>
    overrides.update(chat_template="tokenizer_default", eot_tokens=["<|im_end|>"])
    trained = train_with_overrides(RECIPE, work, overrides)
    # merge/merge_lora.py and eval/run_chatbot_eval.py, in this process to spare two interpreter start-ups
    assert merge_main(["--config", str(trained.config_path), "--out", str(work / "merged"), "--dtype", "float32"]) == 0
    assert chatbot_eval_main(["--model", str(work / "merged"), "--data", str(TEST_ROWS), "--dtype", "float32",
                              "--out", str(work / "eval_merged"), "--max-new-tokens", str(SMOLLM2_NEW_TOKENS),
                              "--batch-size", "12"]) == 0
    shutil.copytree(smollm2_scored_by_transformers, work / "eval_base")  # the base, scored once per session alike
    return trained, work


def predictions(work: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (work / f"eval_{name}" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def reply_problems(reply: str, prompt: str, tokenizer) -> list[str]:
    """Why `reply` is not plain English text answering the chat turn `prompt`; empty when it is."""
    problems = []
    markers = [t for t in {*CHAT_SPECIAL_TOKENS, *tokenizer.all_special_tokens} if t in reply]
    if markers:
        problems.append(f"special tokens {markers}")
    if ROLE_LINE.search(strip_special_tokens(reply)):
        problems.append("a role line of the chat template")
    # the system prompt or the user's message, copied back
    echoed = [line for line in strip_special_tokens(prompt).splitlines() if len(line.split()) >= 3 and line in reply]
    if echoed or reply.strip() in prompt:
        problems.append(f"repeats the prompt {echoed}")
    words = [w.lower() for w in WORD.findall(reply)]
    if len(words) < 5:
        return [*problems, f"only {len(words)} words"]
    # whole words of the model's own byte-level BPE vocabulary ("Ġword" or "word")
    vocab = {t.removeprefix("Ġ").lower() for t in tokenizer.get_vocab()}
    known = sum(w in vocab for w in words) / len(words)
    if known < 0.8:
        problems.append(f"only {known:.0%} of the words are words of the vocabulary")
    if len(set(words)) < 0.4 * len(words):
        problems.append("repeats itself")
    if not FUNCTION_WORDS & set(words):
        problems.append("no English function word")
    return problems


def test_training_loss_is_finite_and_falls(pipeline):
    trained, _ = pipeline
    losses = trained.losses
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    print("losses:", " ".join(f"{x:.3f}" for x in losses))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, f"loss did not fall: {losses}"


@pytest.mark.parametrize("name", ["base", "merged"])
def test_replies_are_sensible_text(pipeline, tokenizer, name):
    _, work = pipeline
    rows = {f"line-{i}": to_messages(json.loads(line)["conversations"])
            for i, line in enumerate(TEST_ROWS.read_text(encoding="utf-8").splitlines(), start=1)}
    bad = {}
    for row in predictions(work, name):
        problems = reply_problems(row["output"], inference_prompt(tokenizer, rows[row["id"]]), tokenizer)
        if problems:
            bad[row["id"]] = (row["output"], problems)
    assert not bad, f"{name}: {len(bad)} of {len(rows)} replies are not sensible text: {bad}"


def test_the_merged_models_card_names_the_model_the_base_was_converted_from(pipeline, base_model):
    """Merging wrote the card, the scorer added its metrics: the base is SmolLM2 by its hub id, with its licence."""
    _, work = pipeline
    card = hub_card(work / "merged" / "README.md", base_model=MODEL_ID, license="apache-2.0", language=["en"],
                    private=[work, base_model])
    assert {r.dataset_name for r in card.data.eval_results} == {TEST_ROWS.stem}


def test_fine_tuning_makes_held_out_replies_likelier(pipeline):
    """The merged adapter carries what training learnt: the held-out references' perplexity falls."""
    _, work = pipeline
    base, tuned = (json.loads((work / f"eval_{name}" / "metrics.json").read_text()) for name in ("base", "merged"))
    print(f"held-out reference perplexity: base {base['perplexity']:.2f}, merged {tuned['perplexity']:.2f}")
    assert tuned["perplexity"] < 0.9 * base["perplexity"], (base["perplexity"], tuned["perplexity"])


@pytest.mark.parametrize("reply", [
    "",
    "<|im_start|>assistant\nI can help you cancel the order.",
    "I can help you cancel the order.<|im_end|>\n<|im_start|>user",
    "assistant\nI can help you cancel the order today.",
    "I want to cancel order {{Order Number}}",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "is is is is is is is is is is is is",
    "zxqv brrtk qwfp glorbnak vzzt prrk snarflex",
])
def test_the_check_rejects_template_debris_and_noise(tokenizer, reply):
    prompt = inference_prompt(tokenizer, [{"role": "user", "content": "I want to cancel order {{Order Number}}"}])
    assert reply_problems(reply, prompt, tokenizer)


def test_the_check_rejects_random_tokens_of_the_vocabulary(tokenizer):
    """What an untrained model writes: real subwords in no language."""
    prompt = inference_prompt(tokenizer, [{"role": "user", "content": "where is my order"}])
    rng = random.Random(0)
    for _ in range(5):
        reply = tokenizer.decode([rng.randrange(len(tokenizer)) for _ in range(SMOLLM2_NEW_TOKENS)], skip_special_tokens=True)
        assert reply_problems(reply, prompt, tokenizer), reply
