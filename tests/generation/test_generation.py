"""Transformers generation (batched, padded, in order) and the vLLM options every generating command passes on;
the real vLLM engine is tested in test_vllm_server.py."""

from __future__ import annotations

from argparse import Namespace

import pytest

from recipekit.generation.engine import DEFAULT_BATCH_SIZE, Sampling, TransformersGenerator, length_sorted_batches
from recipekit.sppo.generate import chat_prompt, open_policy
from recipekit.templates.chat_format import prompt_token_ids_batch
from recipekit.testing import FIXTURES_DIR


def transformers_policy(path) -> TransformersGenerator:
    return open_policy(str(path), Namespace(backend="transformers", dtype="float32", batch_size=DEFAULT_BATCH_SIZE),
                       ".")


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
    policy = transformers_policy(tiny_model(family))
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

    policy = transformers_policy(tiny_model(family))
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
def test_engine_options_reach_the_vllm_server_command(family, entry, tiny_model, tmp_path, capsys):
    """The scorers, the backfill job and the SPPO driver hand --tensor-parallel-size, --data-parallel-size,
    --max-model-len, --gpu-memory-utilization, --dtype and --vllm-arg to the server they start: here a stand-in
    interpreter (no GPUs to split over) that records its command line and exits, so the command fails with
    one line naming the server's log, which holds that command. With transformers they are refused."""
    stand_in = tmp_path / "vllm-python"
    stand_in.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/argv\"\nexit 3\n")
    stand_in.chmod(0o755)
    model = str(tiny_model(family))
    options = ["--backend", "vllm", "--vllm-python", str(stand_in), "--tensor-parallel-size", "4",
               "--data-parallel-size", "2", "--max-model-len", "2048", "--gpu-memory-utilization", "0.8",
               "--dtype", "bfloat16", "--vllm-arg=--enable-prefix-caching"]
    assert entry(model, tmp_path / "vllm", *options) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "the vLLM server exited with status 3 before it was ready; see " in err
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"] and argv[argv.index("--model") + 1] == model
    for flag, value in (("--tensor-parallel-size", "4"), ("--data-parallel-size", "2"), ("--max-model-len", "2048"),
                        ("--gpu-memory-utilization", "0.8"), ("--dtype", "bfloat16")):
        assert argv[argv.index(flag) + 1] == value
    assert "--enable-prefix-caching" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
    log = err.rsplit("see ", 1)[1]
    assert (tmp_path / "argv").read_text().strip() in open(log).read()
    with pytest.raises(SystemExit) as usage:
        entry(model, tmp_path / "transformers", "--tensor-parallel-size", "4")
    assert usage.value.code == 2 and "--tensor-parallel-size splits a vLLM engine" in capsys.readouterr().err


def test_the_api_key_comes_from_the_environment_and_goes_only_into_the_header(monkeypatch, tmp_path):
    """--api-key-env names the variable; the key is sent as a bearer token (a server of this test's checks it), and a
    server that refuses the request is one error naming the answer, not a retry loop."""
    import http.server
    import json
    import threading

    from recipekit.generation import vllm_server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_error(401, "no key")
                return
            body = {"/v1/models": {"data": [{"id": "policy"}]}, "/version": {"version": "0.32.0"}}[self.path]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setenv("MY_VLLM_KEY", "s3cret")
        (connection,) = vllm_server.connect([url], "MY_VLLM_KEY")
        assert (connection.model, connection.version) == ("policy", "0.32.0")
        monkeypatch.delenv("MY_VLLM_KEY")
        with pytest.raises(vllm_server.ServerError, match="refused the request \\(HTTP 401\\)"):
            vllm_server.connect([url], "MY_VLLM_KEY")
    finally:
        server.shutdown()
