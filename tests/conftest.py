"""Test-wide set-up: offline, silent, and every cache inside one temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from recipekit.testing.offline import go_offline

# Set before any test imports transformers/datasets, so nothing reaches for a hub or
# writes outside the session's temporary directory. Under pytest-xdist the controller makes
# the directory and its workers, started with its environment, share it: the tiny models and
# converted checkpoints of the cache are built once for all of them (under a file lock).
_SHARED_TMP_VAR = "RECIPEKIT_TEST_SESSION_TMP"
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get(_SHARED_TMP_VAR):
    _SESSION_TMP = Path(os.environ[_SHARED_TMP_VAR])
else:
    _SESSION_TMP = Path(tempfile.mkdtemp(prefix="recipekit-tests-"))
    os.environ[_SHARED_TMP_VAR] = str(_SESSION_TMP)
_OWN_TMP = _SESSION_TMP / (_WORKER or "main")  # caches a process writes as it goes stay its own
if _WORKER:
    # The cores shared out between the workers (and the trainings they launch): more threads
    # than cores only spin and wait on the tiny models. Set before torch is imported.
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))
go_offline()
# Locations that would override HF_HOME, or point at kernels or models already on this machine.
for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE",
            "TRANSFORMERS_CACHE", "HF_XET_CACHE", "KERNELS_CACHE", "LOCAL_KERNELS", "SENTENCE_TRANSFORMERS_HOME"):
    os.environ.pop(var, None)
os.environ["RECIPEKIT_CACHE"] = str(_SESSION_TMP / "recipekit-cache")
# DeepSpeed's CPU ops (the shared-memory comm op of every run, CPU Adam): `make venv` builds them
# into the environment (minutes of compiling); without them they are compiled on first use, once
# per session, shared by the workers (torch locks the build). A TORCH_EXTENSIONS_DIR set outside wins.
_PREBUILT_OPS = Path(sys.prefix) / "torch_extensions"
# A vLLM server's KV cache on CPU (GiB; the servers' default here is 2): the test prompts need a few thousand
# tokens, and two servers beside a two-process training run must fit in the machine's memory.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(_PREBUILT_OPS if _PREBUILT_OPS.is_dir()
                                                  else _SESSION_TMP / "torch-extensions"))
for var, sub in {
    "HF_HOME": "hf-home",
    "HF_DATASETS_CACHE": "hf-datasets",
    "XDG_CACHE_HOME": "xdg-cache",
    "MPLCONFIGDIR": "matplotlib",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TORCH_HOME": "torch-home",
}.items():
    os.environ[var] = str(_OWN_TMP / sub)


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


# --- `axolotl` commands fork from a warm server (recipekit/testing/warm_axolotl.py) ---
_WARM: dict[str, ExitStack] = {}


def pytest_collection_finish(session):
    """In every process that runs tests: what the test modules imported is frozen out of the
    garbage collector's reach, and, if some tests are marked `train`, a server that has imported
    Axolotl's stack starts, which each `run_axolotl` command of this process forks from (about
    12 s of imports saved per run), and so do the launchers such a run starts (`accelerate
    launch`, `torchrun`: stand-ins) and the ranks they start (PYTHON_EXEC). Commands a
    test builds itself (a process group it kills from outside) and the other commands of child
    processes start cold."""
    if _WORKER is None and session.config.getoption("numprocesses", None):
        return  # the xdist controller runs no test
    import gc

    # Axolotl's sample packing calls gc.collect() for every packing it draws, and its trainer
    # around every run: each would walk the whole torch and transformers import, 0.3 s a call.
    gc.freeze()
    if not any(item.get_closest_marker("train") for item in session.items):
        return  # e.g. `-m "not train"`: nothing to fork

    from recipekit.testing import warm_axolotl

    socket_path = _OWN_TMP / "warm-axolotl.sock"
    _OWN_TMP.mkdir(parents=True, exist_ok=True)
    # Stand-ins that run their command through the server: Axolotl starts its launcher by name
    # (the server puts them first on a run's PATH), and the launcher starts each process with
    # PYTHON_EXEC (torchrun) or with its own interpreter (accelerate), which the server makes
    # PYTHON_EXEC too. Set before the server starts, so that both see the same environment.
    bin_dir = _OWN_TMP / "warm-bin"
    os.environ["PYTHON_EXEC"] = str(warm_axolotl.write_stand_ins(bin_dir, socket_path))
    os.environ[warm_axolotl.STAND_INS_VAR] = str(bin_dir)
    _WARM["server"] = ExitStack()
    _WARM["server"].enter_context(warm_axolotl.serving(socket_path, _OWN_TMP / "warm-axolotl.log"))


def pytest_sessionfinish(session, exitstatus):
    import shutil

    if "server" in _WARM:
        _WARM.pop("server").close()
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) cleans up
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model():
    """tiny_model(family, task="causal_lm") -> path of the cached tiny model."""
    from recipekit.testing.tiny_models import tiny_model_path

    return tiny_model_path


@pytest.fixture(scope="session")
def tiny_pairrm() -> Path:
    """The cached tiny PairRM (recipekit/testing/tiny_pairrm.py), the directory Blender.loadranker loads."""
    from recipekit.testing.tiny_pairrm import tiny_pairrm_path

    return tiny_pairrm_path()


@pytest.fixture(scope="session")
def gemma2_prompt(tiny_model):
    """gemma2_prompt(n) -> a user prompt that reaches the tiny Gemma 2 policy as exactly n tokens,
    counted by the tokenizer's own generation-prompt rendering and tokenisation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("gemma2"))

    def tokens(prompt: str) -> int:
        return len(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=False))

    overhead = tokens("x") - 1

    def prompt(n: int) -> str:
        text = "x" * (n - overhead)  # one token per "x" in the tiny tokenizer; checked, not assumed
        assert tokens(text) == n
        return text

    return prompt


def _built_once(workdir: Path, build):
    """build(workdir)'s result, made once per session by whichever worker asks first; the others read it."""
    import pickle
    import shutil

    from recipekit.testing import cache_build_lock

    result_file = workdir / "result.pickle"
    workdir.parent.mkdir(parents=True, exist_ok=True)
    with cache_build_lock(workdir):
        if not result_file.is_file():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
            result_file.parent.mkdir(parents=True)
            result_file.write_bytes(pickle.dumps(build(workdir)))
    return pickle.loads(result_file.read_bytes())


@pytest.fixture(scope="session")
def shared_smoke_run(session_tmp):
    """shared_smoke_run(recipe, steps, **extra) -> the SmokeResult of smoke_train(recipe, DIR, steps, extra).

    Each distinct run is trained once per session and shared by the tests (in any module, on any
    worker) that ask for the same one, which only read it. A test that asks is marked `train`.
    """
    import hashlib
    import json

    from recipekit.testing.smoke import smoke_train

    def run(recipe: Path, steps: int, **extra):
        key = hashlib.sha256(json.dumps([str(recipe), steps, extra], sort_keys=True).encode()).hexdigest()[:12]
        return _built_once(session_tmp / "smoke-runs" / f"{Path(recipe).stem}-{key}",
                           lambda workdir: smoke_train(recipe, workdir, steps, extra))

    return run


@pytest.fixture(scope="session")
def smollm2_scored_by_transformers(session_tmp) -> Path:
    """The chatbot scorer's output folder for the base SmolLM2 on the held-out chatbot rows: transformers, greedy,
    SMOLLM2_NEW_TOKENS new tokens, float32, with perplexity; scored once for the tests that compare with it."""
    from helpers import SMOLLM2_NEW_TOKENS

    from recipekit.chatbot.scoring import main as chatbot_eval_main
    from recipekit.testing import FIXTURES_DIR
    from recipekit.testing.pretrained import smollm2_path

    def score(workdir: Path) -> Path:
        out = workdir / "eval"
        assert chatbot_eval_main(["--model", str(smollm2_path()), "--out", str(out),
                                  "--data", str(FIXTURES_DIR / "prepared" / "cs_chatbot_test.jsonl"),
                                  "--max-new-tokens", str(SMOLLM2_NEW_TOKENS), "--batch-size", "12",
                                  "--dtype", "float32"]) == 0
        return out

    return _built_once(session_tmp / "smollm2-scored", score)


@pytest.fixture
def fake_hub(monkeypatch):
    """Stands in for huggingface_hub.HfApi where recipekit.checkpoints.hub uses it (no network here).

    Returns a record: `calls` lists (method, arguments) in order, upload_folder's with the
    folder's file names at the time of the call; `fail[method] = error` makes that method raise.
    """
    from types import SimpleNamespace

    import recipekit.checkpoints.hub

    record = SimpleNamespace(calls=[], fail={})

    class RecordingHfApi:
        def _called(self, method: str, **arguments) -> None:
            record.calls.append((method, arguments))
            if method in record.fail:
                raise record.fail[method]

        def whoami(self):
            self._called("whoami")
            return {"name": "someone"}

        def create_repo(self, repo_id, **arguments):
            self._called("create_repo", repo_id=repo_id, **arguments)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **arguments):
            files = sorted(p.name for p in Path(arguments["folder_path"]).iterdir())
            self._called("upload_folder", files=files, **arguments)

    monkeypatch.setattr(recipekit.checkpoints.hub, "HfApi", RecordingHfApi)
    return record


# --- the `train` marker is kept honest: a test that launches `axolotl train` without it fails ---
_running: dict[str, object] = {"item": None, "trained": set()}
_popen_init = subprocess.Popen.__init__


def _launches_axolotl_train(args) -> bool:
    argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    return (any(Path(a).name == "axolotl" for a in argv) and "train" in argv) or "axolotl.cli.train" in argv


def _watching_popen_init(self, args, *rest, **kwargs):
    if _running["item"] is not None and _launches_axolotl_train(args):
        _running["trained"].add(_running["item"].nodeid)
    _popen_init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _watching_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running["item"] = item
    yield
    _running["item"] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (call.when == "teardown" and item.nodeid in _running["trained"] and item.get_closest_marker("train") is None
            and report.passed):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} runs `axolotl train` (here or in a fixture) but is not marked `train`"
