"""Generation backends: what vLLM and transformers are fed for the same rendered prompt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from recipekit.generation import engine as generation
from recipekit.generation.engine import DEFAULT_BATCH_SIZE, Sampling, TransformersGenerator, length_sorted_batches
from recipekit.sppo.generate import chat_prompt, open_policy
from recipekit.templates.chat_format import prompt_token_ids_batch
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.tiny_models import FAMILIES

PROMPTS = ("Where is my order?", "My washing machine shows error OE after every cycle; what should I do first?")


class StandInLLM:
    """Stands in for vllm.LLM: records each prompt exactly as the project hands it over."""

    def __init__(self, model, **options):
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.options = options
        self.calls = []  # the prompts of each generate call

    @property
    def received(self) -> list:
        return [prompt for call in self.calls for prompt in call]

    def engine_ids(self, prompt) -> list[int]:
        """The ids vLLM would run: a token prompt as given, a string tokenised with special tokens (vLLM's way)."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt).input_ids
        return list(prompt["prompt_token_ids"])

    def generate(self, prompts, params, use_tqdm=True):
        """Like vLLM, one output per prompt in the order given; its text names the prompt's ids."""
        self.calls.append(list(prompts))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=echo(self.engine_ids(p)), token_ids=[],
                                                         finish_reason="length")]) for p in prompts]


def echo(ids: list[int]) -> str:
    return " ".join(map(str, ids))


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


# Prompts from a few tokens to about three times the tiny Gemmas' 64-token sliding window, out of
# length order, so one default batch pads most of its rows and crosses the window.
WORDS = "order refund washing machine error cycle account password shipping invoice".split()
MIXED_PROMPTS = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(n)) for i, n in enumerate([2, 60, 7, 25, 1, 13])]


def _recording(monkeypatch, model) -> list[dict]:
    """Every generate call's keyword arguments, recorded on the way to the real one."""
    calls, real_generate = [], model.generate

    def recording_generate(**kwargs):
        calls.append(kwargs)
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    return calls


@pytest.mark.parametrize("family", ["gemma4", "gemma3", "gemma2", "qwen3", "llama"])
def test_batched_greedy_equals_one_row_at_a_time(family, tiny_model, monkeypatch):
    """The default, batched generation (left padding, rows grouped by length) returns, in input order,
    exactly the greedy texts of one-row generation (fp32, CPU)."""
    policy = open_policy(str(tiny_model(family)), "transformers", dtype="float32")
    assert policy.batch_size == DEFAULT_BATCH_SIZE > len(MIXED_PROMPTS)
    prompts = [chat_prompt(policy.tokenizer, p) for p in MIXED_PROMPTS]
    sampling = Sampling(max_new_tokens=12)
    calls = _recording(monkeypatch, policy.model)
    batched = policy.generate(prompts, sampling)
    assert len(calls) == 1 and calls[0]["attention_mask"].min() == 0  # one batch, padded
    one_by_one = TransformersGenerator(policy.model, policy.tokenizer, batch_size=1).generate(prompts, sampling)
    assert len(calls) == 1 + len(prompts)
    assert [(g.text, g.new_tokens, g.stopped) for g in batched] == [(g.text, g.new_tokens, g.stopped)
                                                                   for g in one_by_one]


@pytest.mark.parametrize("family", ["gemma4", "gemma3", "gemma2", "qwen3", "llama"])
def test_left_padding_masks_pads_and_numbers_positions_from_the_first_real_token(family, tiny_model):
    """What the model's forward receives in a padded batch: pads on the left with attention mask 0, each
    row's positions 0..n-1 over its own tokens, the new tokens' positions going on from n; and fed that,
    a padded row's next-token logits are the row's own alone (a check that holds even where a tiny
    model's greedy text is the same for every prompt, as the tiny Qwen 3's newlines)."""
    import torch

    policy = open_policy(str(tiny_model(family)), "transformers", dtype="float32")
    prompts = [chat_prompt(policy.tokenizer, p) for p in MIXED_PROMPTS[:3]]
    ids = prompt_token_ids_batch(policy.tokenizer, prompts)
    seen = []
    policy.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    policy.generate(prompts, Sampling(max_new_tokens=3))
    prefill, *steps = seen
    assert len(steps) == 2
    rows = [ids[i] for i in length_sorted_batches([len(r) for r in ids], DEFAULT_BATCH_SIZE)[0]]
    width = max(map(len, rows))
    assert width > min(map(len, rows))  # some row is padded
    with torch.no_grad():
        padded = policy.model(input_ids=prefill["input_ids"], attention_mask=prefill["attention_mask"],
                              position_ids=prefill["position_ids"], use_cache=False).logits[:, -1]
        for row, own in enumerate(rows):
            n = len(own)
            assert prefill["input_ids"][row, width - n:].tolist() == own
            assert prefill["attention_mask"][row].tolist() == [0] * (width - n) + [1] * n
            assert prefill["position_ids"][row, width - n:].tolist() == list(range(n))
            assert [step["position_ids"][row].tolist() for step in steps] == [[n + i] for i in range(len(steps))]
            alone = policy.model(input_ids=torch.tensor([own]), use_cache=False).logits[0, -1]
            torch.testing.assert_close(padded[row], alone, rtol=1e-4, atol=1e-5)


def test_length_sorted_batches_group_similar_lengths_longest_first():
    assert length_sorted_batches([5, 90, 7, 40, 90, 1], 4) == [[1, 4, 3, 2], [0, 5]]
    assert length_sorted_batches([3, 1, 2], 1) == [[0], [2], [1]]


def test_vllm_gets_every_prompt_in_one_call_and_results_keep_their_order(tiny_model, stand_in_vllm):
    """The vLLM backend hands the engine all rows at once (it batches them itself, here a stand-in) and
    returns each row's result, and reports it to on_done, at the row's own index."""
    policy = open_policy(str(tiny_model("gemma4")), "vllm")
    prompts = [chat_prompt(policy.tokenizer, p) for p in MIXED_PROMPTS]
    done = {}
    results = policy.generate(prompts, Sampling(max_new_tokens=4), on_done=lambda i, g: done.setdefault(i, g.text))
    (engine,) = stand_in_vllm
    expected = [echo(ids) for ids in prompt_token_ids_batch(policy.tokenizer, prompts)]
    assert len(engine.calls) == 1 and [echo(engine.engine_ids(p)) for p in engine.calls[0]] == expected
    assert [g.text for g in results] == expected and done == dict(enumerate(expected))



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
