"""Only the assistant's content and its end-of-turn token train, under Axolotl's own masking.

Each prepared fixture row goes through the prompt strategy Axolotl builds for the recipe's
dataset entry (recipekit.training.show_trained_tokens.tokenize_row). The expected trained
positions are worked out here without Axolotl: render the conversation with Axolotl's
shipped template, find each assistant reply in the text after its role header, and take
the tokens whose character offsets fall inside it, plus the end-of-turn token after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipekit.paths import CHAT_TEMPLATES_DIR, RECIPES_DIR
from recipekit.templates.chat_format import to_messages
from recipekit.templates.special_tokens import backfill_sentinels
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.smoke import cpu_run_overrides, resolve_fixtures, resolve_tiny_model
from recipekit.training.recipe_config import apply_overrides, load_recipe
from recipekit.training.show_trained_tokens import IGNORE_INDEX, axolotl_cfg, highlight, main, tokenize_row

PREPARED = FIXTURES_DIR / "prepared"
ROWS_PER_FILE = 4

# The dataset entry every chat_template SFT recipe uses.
ENTRY = {
    "type": "chat_template",
    "field_messages": "conversations",
    "message_property_mappings": {"role": "from", "content": "value"},
    "roles_to_train": ["assistant"],
    "train_on_eos": "turn",
}
# family, Axolotl chat_template (or a jinja file), end-of-turn token, assistant header, trims content?,
# fixture, extra cfg
CASES = {
    "gemma4-supervisor": ("gemma4", "gemma4", "<turn|>", "<|turn>model\n", True, "supervisor_stage2_train.jsonl", {}),
    "gemma4-stage1": ("gemma4", "gemma4", "<turn|>", "<|turn>model\n", True, "supervisor_stage1.jsonl", {}),
    "gemma3-bitext": ("gemma3", "gemma3", "<end_of_turn>", "<start_of_turn>model\n", True, "cs_chatbot_train.jsonl", {}),
    "gemma2-bitext": ("gemma2", "gemma", "<end_of_turn>", "<start_of_turn>model\n", True, "cs_chatbot_train.jsonl", {}),
    "qwen3_backfill-backfill": ("qwen3_backfill", "chatml", "<|im_end|>", "<|im_start|>assistant\n", False,
                                "backfill_train.jsonl", {}),
    # The real backfill recipe starts from plain Qwen 3 and adds the sentinels as tokens.
    "qwen3-backfill": ("qwen3", "chatml", "<|im_end|>", "<|im_start|>assistant\n", False, "backfill_train.jsonl",
                       {"special_tokens": {"additional_special_tokens": backfill_sentinels()}}),
    "llama-stage1": ("llama", CHAT_TEMPLATES_DIR / "sarashina.jinja", "</s>", "<|assistant|>", False,
                     "supervisor_stage1.jsonl", {}),
}


def _config(tiny: Path, template, eot: str, data: Path, extra: dict) -> dict:
    config = {
        "base_model": str(tiny),
        "eot_tokens": [eot],
        "datasets": [{**ENTRY, "path": str(data), "ds_type": "json"}],
        "sequence_len": 1024,
        "micro_batch_size": 1,
        "num_epochs": 1,
        "learning_rate": 1e-4,
        "output_dir": "/tmp/unused",
        **extra,
    }
    if isinstance(template, Path):
        config.update(chat_template="jinja", chat_template_jinja=template.read_text(encoding="utf-8"))
    else:
        config["chat_template"] = template
    return config


def _expected_positions(tokenizer, text: str, messages, header: str, eot: str, trims: bool) -> tuple[list[int], set[int]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, cursor = [], 0
    for message in messages:
        if message["role"] != "assistant":
            continue
        reply = message["content"].strip() if trims else message["content"]
        start = text.index(header, cursor) + len(header)
        assert text.startswith(reply + eot, start), "the template changed the reply or its end of turn"
        spans.append((start, start + len(reply) + len(eot)))
        cursor = start + len(reply)
    positions = {i for i, (a, b) in enumerate(encoded["offset_mapping"])
                 if b > a and any(s <= a and b <= e for s, e in spans)}
    return encoded["input_ids"], positions


def _check_rows(cfg, data: Path, header: str, eot: str, trims: bool) -> None:
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()[:ROWS_PER_FILE]]
    for row in rows:
        tokenizer, tokens = tokenize_row(cfg, row)
        messages = to_messages(row["conversations"])
        text = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=_template_text(cfg, tokenizer))
        ids, expected = _expected_positions(tokenizer, text, messages, header, eot, trims)
        assert tokens["input_ids"] == ids
        trained = {i for i, label in enumerate(tokens["labels"]) if label != IGNORE_INDEX}
        assert trained == expected, highlight(tokenizer, tokens["input_ids"], tokens["labels"], colour=False)
        assert all(tokens["labels"][i] == ids[i] for i in trained)
        eot_id = tokenizer.convert_tokens_to_ids(eot)
        assert sum(1 for i in trained if ids[i] == eot_id) == sum(m["role"] == "assistant" for m in messages)
        if any(s in text for s in backfill_sentinels()):  # each sentinel is one token, never split
            for sentinel in backfill_sentinels():
                assert text.count(sentinel) == ids.count(tokenizer.convert_tokens_to_ids(sentinel))


@pytest.mark.parametrize("case", sorted(CASES))
def test_only_assistant_content_and_end_of_turn_train(case, tiny_model):
    family, template, eot, header, trims, fixture, extra = CASES[case]
    data = PREPARED / fixture
    _check_rows(axolotl_cfg(_config(tiny_model(family), template, eot, data, extra)), data, header, eot, trims)


# assistant header and whether the template trims replies, by Axolotl chat_template name
TEMPLATE_SHAPES = {
    "gemma4": ("<|turn>model\n", True),
    "gemma3": ("<start_of_turn>model\n", True),
    "gemma": ("<start_of_turn>model\n", True),
    "chatml": ("<|im_start|>assistant\n", False),
}
CHAT_RECIPES = sorted(
    path for path in RECIPES_DIR.glob("*.yml")
    if any(entry.get("type") == "chat_template" for entry in load_recipe(path).get("datasets") or [])
)


@pytest.mark.parametrize("recipe", CHAT_RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_train_only_the_reply(recipe, tmp_path):
    """The same proof on each shipped chat_template recipe, as its smoke run would train it."""
    config = load_recipe(recipe)
    fixtures = resolve_fixtures(recipe, config)
    config = apply_overrides(config, cpu_run_overrides(config, base_model=resolve_tiny_model(recipe, config),
                                                       dataset_paths=fixtures, workdir=tmp_path, steps=1))
    cfg = axolotl_cfg(config, source=str(recipe))
    header, trims = TEMPLATE_SHAPES[cfg.chat_template]
    _check_rows(cfg, Path(fixtures[0]), header, cfg.eot_tokens[0], trims)


def _template_text(cfg, tokenizer) -> str:
    from axolotl.utils.chat_templates import get_chat_template_from_config

    return get_chat_template_from_config(cfg=cfg, ds_cfg=cfg.datasets[0], tokenizer=tokenizer)


def test_show_trained_tokens_marks_only_the_reply(tiny_model, tmp_path, capsys):
    family, template, eot, *_ = CASES["gemma3-bitext"]
    data = PREPARED / "cs_chatbot_train.jsonl"
    config = tmp_path / "cfg.yml"
    config.write_text(json.dumps(_config(tiny_model(family), template, eot, data, {})), encoding="utf-8")
    assert main(["--config", str(config), "--data", str(data), "--row", "2", "--plain"]) == 0
    shown = capsys.readouterr().out
    reply = json.loads(data.read_text(encoding="utf-8").splitlines()[2])["conversations"][-1]["value"].strip()
    assert f"[[{reply}{eot}]]" in shown
    assert shown.count("[[") == 1


def test_reward_rows_tokenise_under_axolotl_bradley_terry(tmp_path):
    """The reward recipe's rows render as user, assistant with the chosen and the rejected reply,
    exactly as the scorer renders a pair: no empty system turn sneaks in."""
    recipe = RECIPES_DIR / "reward_ja_3b.yml"
    config = load_recipe(recipe)
    fixtures = resolve_fixtures(recipe, config)
    config = apply_overrides(config, cpu_run_overrides(config, base_model=resolve_tiny_model(recipe, config),
                                                       dataset_paths=fixtures, workdir=tmp_path, steps=1))
    cfg = axolotl_cfg(config, source=str(recipe))
    data = Path(fixtures[0])
    for row in [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()[:ROWS_PER_FILE]]:
        tokenizer, tokens = tokenize_row(cfg, dict(row))
        for side in ("chosen", "rejected"):
            pair = [{"role": "user", "content": row["input"]}, {"role": "assistant", "content": row[side]}]
            assert tokenizer.decode(tokens[f"{side}_ids"]) == tokenizer.apply_chat_template(pair, tokenize=False)
            assert tokenizer.decode(tokens[f"{side}_ids"]) == f"<|user|>{row['input']}</s><|assistant|>{row[side]}</s>"
