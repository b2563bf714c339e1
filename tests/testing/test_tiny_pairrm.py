"""The tiny PairRM is built the same way every time, in the layout llm-blender's loadranker reads."""

from __future__ import annotations

import json

from recipekit.testing.tiny_pairrm import PREFIX_TOKENS, tiny_pairrm_path


def test_builds_are_deterministic_and_name_their_own_backbone(tiny_pairrm, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("RECIPEKIT_CACHE", str(tmp_path))
    second = tiny_pairrm_path()
    assert second != tiny_pairrm and second.name == tiny_pairrm.name
    first_weights, second_weights = (torch.load(p / "pytorch_model.bin") for p in (tiny_pairrm, second))
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[name], second_weights[name]) for name in first_weights)
    assert (tiny_pairrm / "backbone" / "tokenizer.json").read_bytes() == (second / "backbone" / "tokenizer.json").read_bytes()
    config = json.loads((second / "config.json").read_text(encoding="utf-8"))
    assert config["ranker_type"] == "pairranker" and config["model_name"] == str(second / "backbone")
    added = json.loads((second / "backbone" / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    assert set(PREFIX_TOKENS.values()) <= {token["content"] for token in added}
