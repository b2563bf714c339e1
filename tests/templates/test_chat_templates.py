"""Our chat templates render byte-for-byte like the references Axolotl ships.

Both sides go through transformers' own Jinja renderer (the one `apply_chat_template`
and Axolotl use), with the family's special tokens passed in as variables.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from jinja2.exceptions import TemplateError
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

from recipekit.paths import CHAT_TEMPLATES_DIR
from recipekit.templates.chat_format import inference_prompt, to_messages
from recipekit.templates.special_tokens import backfill_sentinels
from recipekit.testing import FIXTURES_DIR

# our file -> Axolotl's reference file of the same family
REFERENCES = {
    "chatml.jinja": "chatml.jinja",
    "gemma2.jinja": "gemma.jinja",
    "gemma3.jinja": "gemma3.jinja",
    "gemma4.jinja": "gemma4.jinja",
}
SPECIALS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}

SYSTEM = {"role": "system", "content": "  당신은 가전 상담 품질을 검토합니다.\n"}
U1 = {"role": "user", "content": "[Category] W/M\n세탁기 문이 안 열려요.  "}
A1 = {"role": "assistant", "content": "<think>\n문서 확인\n</think>\n{\"label\": \"correct\", \"reason\": \"일치\"}"}
U2 = {"role": "user", "content": "\nAnd the warranty?"}
A2 = {"role": "assistant", "content": "  One year on parts.  \n"}
CONVERSATIONS = {
    "single": [U1, A1],
    "system": [SYSTEM, U1, A1],
    "multi_turn": [U1, A1, U2, A2],
    "system_multi_turn": [SYSTEM, U1, A1, U2, A2],
    "prompt_only": [U1],
    "system_prompt_only": [SYSTEM, U1, A1, U2],
}
NON_ALTERNATING = [U1, U2, A1]


def _reference(name: str) -> str:
    ref = resources.files("axolotl.utils.chat_templates").joinpath("templates", REFERENCES[name])
    return ref.read_text(encoding="utf-8")


def _ours(name: str) -> str:
    return (CHAT_TEMPLATES_DIR / name).read_text(encoding="utf-8")


def _render(template: str, messages, **kwargs) -> str:
    return render_jinja_template(conversations=[messages], chat_template=template, **SPECIALS, **kwargs)[0][0]


# Gemma 2 has no system role: both templates refuse it (test_gemma2_refuses_system_like_reference).
RENDER_CASES = [
    (name, case) for name in sorted(REFERENCES) for case in sorted(CONVERSATIONS)
    if not (name == "gemma2.jinja" and CONVERSATIONS[case][0]["role"] == "system")
]


@pytest.mark.parametrize("generation_prompt", [False, True])
@pytest.mark.parametrize("name,case", RENDER_CASES)
def test_renders_like_axolotl_reference(name, case, generation_prompt):
    messages = CONVERSATIONS[case]
    ours = _render(_ours(name), messages, add_generation_prompt=generation_prompt)
    reference = _render(_reference(name), messages, add_generation_prompt=generation_prompt)
    assert ours == reference


@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("generation_prompt", [False, True])
@pytest.mark.parametrize(
    "messages",
    [
        [SYSTEM, U1, A1],
        [U1, A1],
        # a model turn continued by a second assistant message, and a thought channel to strip
        [U1, A1, {"role": "assistant", "content": "<|channel>thought\nhidden<channel|>visible"}],
    ],
)
def test_gemma4_variants_like_reference(messages, generation_prompt, thinking):
    kwargs = dict(add_generation_prompt=generation_prompt, enable_thinking=thinking)
    assert _render(_ours("gemma4.jinja"), messages, **kwargs) == _render(_reference("gemma4.jinja"), messages, **kwargs)


@pytest.mark.parametrize("name", ["gemma2.jinja", "gemma3.jinja"])
def test_gemma_refuses_non_alternating_roles_like_reference(name):
    for template in (_ours(name), _reference(name)):
        with pytest.raises(TemplateError, match="alternate"):
            _render(template, NON_ALTERNATING)


def test_gemma2_refuses_system_like_reference():
    for template in (_ours("gemma2.jinja"), _reference("gemma2.jinja")):
        with pytest.raises(TemplateError, match="ystem"):
            _render(template, [SYSTEM, U1])


def test_gemma4_generation_prompt_adds_empty_thought_channel():
    prompt = [SYSTEM, U1]
    without = _render(_ours("gemma4.jinja"), prompt)
    with_prompt = _render(_ours("gemma4.jinja"), prompt, add_generation_prompt=True)
    assert with_prompt == without + "<|turn>model\n<|channel>thought\n<channel|>"


def _supervisor_rows():
    path = FIXTURES_DIR / "prepared" / "supervisor_stage2_train.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:5]]


def test_gemma4_inference_prompt_is_prefix_of_training_text(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("gemma4"))
    for row in _supervisor_rows():
        messages = to_messages(row["conversations"])
        training_text = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = inference_prompt(tokenizer, messages)
        no_generation_prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False)
        assert prompt == no_generation_prompt + "<|turn>model\n"
        assert training_text.startswith(prompt)
        assert training_text[len(prompt):] == messages[-1]["content"].strip() + "<turn|>\n"
        # what the default generation prompt would have asked for is not what was trained
        assert not training_text.startswith(
            tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        )


def test_backfill_sentinels_are_single_tokens(tiny_model):
    """The backfill format is ChatML with the sentinels inside the message content."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("qwen3_backfill"))
    for sentinel in backfill_sentinels():
        ids = tokenizer(sentinel, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, sentinel
        assert tokenizer.convert_ids_to_tokens(ids) == [sentinel]


def test_sarashina_renders_no_empty_system_turn(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("llama"))
    pair = [{"role": "user", "content": "質問"}, {"role": "assistant", "content": "回答"}]
    expected = "<|user|>質問</s><|assistant|>回答</s>"
    assert tokenizer.apply_chat_template(pair, tokenize=False) == expected
    assert tokenizer.apply_chat_template([{"role": "system", "content": ""}, *pair], tokenize=False) == expected
    assert tokenizer.apply_chat_template([{"role": "system", "content": "指示"}, *pair], tokenize=False) == \
        "<|system|>指示</s>" + expected
