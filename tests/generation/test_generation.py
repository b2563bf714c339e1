"""Generation backends: what vLLM and transformers are fed for the same rendered prompt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from recipekit.generation import engine as generation
from recipekit.generation.engine import Sampling
from recipekit.sppo.generate import chat_prompt, open_policy
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.tiny_models import FAMILIES

PROMPTS = ("Where is my order?", "My washing machine shows error OE after every cycle; what should I do first?")


class StandInLLM:
    """Stands in for vllm.LLM: records each prompt exactly as the project hands it over."""

    def __init__(self, model, **options):
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.options = options
        self.received = []

    def engine_ids(self, prompt) -> list[int]:
        """The ids vLLM would run: a token prompt as given, a string tokenised with special tokens (vLLM's way)."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt).input_ids
        return list(prompt["prompt_token_ids"])

    def generate(self, prompts, params, use_tqdm=True):
        self.received.extend(prompts)
        done = SimpleNamespace(text="", token_ids=[], finish_reason="length")
        return [SimpleNamespace(outputs=[done]) for _ in prompts]


@pytest.fixture
def stand_in_vllm(monkeypatch):
    """Replaces the lazy vLLM import; the list collects every engine the project builds."""
    engines = []

    def llm(model, **options):
        engines.append(StandInLLM(model, **options))
        return engines[-1]

    module = SimpleNamespace(LLM=llm, SamplingParams=lambda **kwargs: kwargs)
    monkeypatch.setattr(generation, "require_gpu_package", lambda name, feature: module)
    return engines


@pytest.mark.parametrize("family", ["gemma4", "gemma3", "gemma2", "qwen3", "llama"])
def test_vllm_gets_the_ids_transformers_generates_from(family, tiny_model, stand_in_vllm, monkeypatch):
    """vLLM (a stand-in engine, no GPU here) receives token prompts equal to the ids that
    transformers' `model.generate` is fed for the same rows, through the SPPO/scorer entry
    point, and they hold one BOS exactly where the family's template writes one."""
    path = tiny_model(family)
    sampling = Sampling(max_new_tokens=1)

    policy = open_policy(str(path), "transformers", dtype="float32")
    fed = []
    real_generate = policy.model.generate

    def recording_generate(**kwargs):
        for row, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
            fed.append(row[mask.bool()].tolist())  # left padding removed
        return real_generate(**kwargs)

    monkeypatch.setattr(policy.model, "generate", recording_generate)
    policy.generate([chat_prompt(policy.tokenizer, p) for p in PROMPTS], sampling)

    vllm_policy = open_policy(str(path), "vllm")
    vllm_policy.generate([chat_prompt(vllm_policy.tokenizer, p) for p in PROMPTS], sampling)
    (engine,) = stand_in_vllm
    engine_ids = [engine.engine_ids(prompt) for prompt in engine.received]

    bos = policy.tokenizer.bos_token_id
    assert [ids.count(bos) for ids in engine_ids] == [1 if FAMILIES[family].add_bos else 0] * len(PROMPTS)
    assert sorted(engine_ids) == sorted(fed) and len(fed) == len(PROMPTS)
    # Token prompts, so no vLLM tokenizer setting can add or drop a special token.
    assert all(isinstance(prompt, dict) for prompt in engine.received)



def _scorer(model, out, *extra):
    from recipekit.supervisor.scoring import main

    data = FIXTURES_DIR / "prepared" / "supervisor_stage2_test.jsonl"
    return main(["--model", model, "--data", str(data), "--out", str(out), "--limit", "2", *extra])


def _backfill(model, out, *extra):
    from recipekit.backfill.job import main

    return main(["--model", model, "--input", str(FIXTURES_DIR / "raw" / "backfill_legacy.jsonl"), "--out", str(out),
                 *extra])


def _sppo(model, out, *extra):
    from recipekit.sppo.driver import main

    return main(["--prompts", str(FIXTURES_DIR / "prepared" / "sppo_prompts_iter1.jsonl"), "--out", str(out),
                 "--start-model", model, "--limit", "3", "--holdout", "1", "--shard", "0/1", *extra])


@pytest.mark.parametrize("family, entry", [("gemma4", _scorer), ("qwen3_backfill", _backfill), ("gemma2", _sppo)],
                         ids=["scorer", "backfill", "sppo"])
def test_tensor_parallel_size_reaches_the_vllm_engine(family, entry, tiny_model, stand_in_vllm, tmp_path, capsys):
    """--tensor-parallel-size of the scorers, the backfill job and the SPPO driver's generate stage becomes
    the engine's tensor_parallel_size; with the transformers backend it is refused, not ignored."""
    model = str(tiny_model(family))
    assert entry(model, tmp_path / "vllm", "--backend", "vllm", "--tensor-parallel-size", "4") == 0
    assert [engine.options["tensor_parallel_size"] for engine in stand_in_vllm] == [4]
    assert stand_in_vllm[0].received  # the rows went to that engine
    with pytest.raises(SystemExit) as usage:
        entry(model, tmp_path / "transformers", "--tensor-parallel-size", "4")
    assert usage.value.code == 2 and "--tensor-parallel-size splits a vLLM engine" in capsys.readouterr().err
