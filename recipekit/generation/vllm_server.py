"""vLLM through its OpenAI-compatible server, the one way this project talks to vLLM.

vLLM lives in an environment of its own (`.venv-vllm`, made by `make venv-vllm`): its pins
conflict with Axolotl's. A command given `--backend vllm` either starts a server on its
checkpoint from that environment (a free loopback port, its log in the output directory,
stopped on exit, on error and on Ctrl-C) or joins servers already running (`--server-url`,
repeatable: rows are spread over all of them, one GPU group or node each).

Prompts go as token ids, rendered and tokenised here exactly as for transformers (the
template wrote the one BOS), and the ids the server echoes back are checked against those
sent. Replies come back as token ids too and are cut at the first stop id and decoded here,
special tokens kept, so both backends turn tokens into text the same way. Requests run
concurrently up to a bound; a failed one is retried with backoff, and a server that dies ends
the command with one line naming its log (every row finished so far is already saved, so a
rerun resumes).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from recipekit.errors import RecipekitError
from recipekit.paths import REPO_ROOT

VLLM_VENV = REPO_ROOT / ".venv-vllm"
DEFAULT_API_KEY_ENV = "VLLM_API_KEY"
DEFAULT_CONCURRENCY = 64  # requests in flight per server: enough for vLLM's scheduler to batch
RETRIES = 4  # a failed request is tried again after 1, 2, 4, 8 s


class ServerError(RecipekitError, RuntimeError):
    """A vLLM server that cannot be started or reached, or that answered what was not asked."""


@dataclass(frozen=True)
class EngineOptions:
    """The engine settings a GPU user needs, passed to a server this command starts."""

    dtype: str = "auto"
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    extra_args: tuple[str, ...] = ()  # any other `vllm serve` option, as given (--vllm-arg)

    def server_args(self) -> list[str]:
        args = ["--dtype", self.dtype, "--tensor-parallel-size", str(self.tensor_parallel_size),
                "--data-parallel-size", str(self.data_parallel_size)]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.gpu_memory_utilization:
            args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return args + list(self.extra_args)


def vllm_python(explicit: str | None = None) -> str:
    """The generation environment's interpreter: --vllm-python, else RECIPEKIT_VLLM_PYTHON, else .venv-vllm."""
    python = explicit or os.environ.get("RECIPEKIT_VLLM_PYTHON") or str(VLLM_VENV / "bin" / "python")
    if not Path(python).is_file():
        raise ServerError(f"no vLLM environment at {python}: run `make venv-vllm` (or pass --vllm-python, or "
                          "--server-url of a running server)")
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


class LocalServer:
    """`python -m vllm.entrypoints.openai.api_server` on `model`, in its own process group, until close()."""

    def __init__(self, model: str, log_path: str | Path, options: EngineOptions, python: str | None = None,
                 timeout: float = 900.0):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [vllm_python(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                   "--served-model-name", Path(str(model)).name, "--host", "127.0.0.1", "--port", str(port),
                   *options.server_args()]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the training environment's packages must not shadow vLLM's own
        if _cpu_only():  # no CUDA graphs to capture on a CPU, and a bounded KV cache beside the weights
            command.append("--enforce-eager")
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        with open(self.log_path, "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        print(f"vLLM server: starting on {model} at {self.url} (log {self.log_path})")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the vLLM server exited with status {self.process.returncode} before it was "
                                  f"ready; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ServerError(f"the vLLM server was not ready after {timeout:.0f} s; see {self.log_path}")

    def died(self) -> str | None:
        """Why requests fail when the process is gone, else None."""
        if self.process.poll() is None:
            return None
        return f"the vLLM server exited with status {self.process.returncode}; see {self.log_path}"

    def close(self) -> None:
        """Stop the server and the engine processes it started (its whole process group)."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class ServerConnection:
    """One server's URL, the model name it serves, its vLLM version, and JSON requests to it."""

    def __init__(self, url: str, api_key: str | None, local: LocalServer | None = None):
        self.url, self.local = url.rstrip("/"), local
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        models = self.request("GET", "/v1/models")["data"]
        if len(models) != 1:
            raise ServerError(f"{self.url} serves {len(models)} models; expected one")
        self.model = models[0]["id"]
        self.version = self.request("GET", "/version").get("version")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer; connection failures and 5xx answers are retried, a 4xx answer is an error at once."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in range(RETRIES + 1):
            problem = self.local.died() if self.local else None
            if problem:
                raise ServerError(problem)
            try:
                request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
                with urllib.request.urlopen(request, timeout=3600) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code < 500:
                    raise ServerError(f"{self.url}{path} refused the request (HTTP {err.code}): {detail}") from err
                failure = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, OSError) as err:
                failure = str(getattr(err, "reason", err))
            if attempt < RETRIES:
                time.sleep(2 ** attempt)
        problem = self.local.died() if self.local else None
        raise ServerError(problem or f"{self.url}{path} failed {RETRIES + 1} times (last: {failure}); every row "
                                     "finished so far is saved, and a rerun resumes")


def connect(urls: Sequence[str], api_key_env: str = DEFAULT_API_KEY_ENV,
            local: LocalServer | None = None) -> list[ServerConnection]:
    """Connections to every server; the key is read from the environment, never from the command line."""
    api_key = os.environ.get(api_key_env) if api_key_env else None
    connections = [ServerConnection(url, api_key, local) for url in urls]
    versions = {c.version for c in connections}
    if len(versions) > 1:
        raise ServerError(f"the servers run different vLLM versions ({', '.join(sorted(map(str, versions)))}): "
                          "their replies would not be comparable")
    return connections


class ParallelRequests:
    """Up to `concurrency` requests in flight per server; each request takes whichever server has room."""

    def __init__(self, servers: Sequence[ServerConnection], concurrency: int = DEFAULT_CONCURRENCY):
        self.servers, self.concurrency = list(servers), concurrency

    def map(self, bodies: Sequence[dict[str, Any]], on_answer: Callable[[int, dict[str, Any]], None],
            desc: str) -> None:
        """POST every body to /v1/completions; `on_answer(index, answer)` runs here, in this thread, as each
        answer arrives, so callers may write files from it."""
        slots: queue.Queue[ServerConnection] = queue.Queue()
        for _ in range(self.concurrency):  # interleaved, so that even a few rows go to every server
            for server in self.servers:
                slots.put(server)

        def send(body: dict[str, Any]) -> dict[str, Any]:
            server = slots.get()
            try:
                return server.request("POST", "/v1/completions", {**body, "model": server.model})
            finally:
                slots.put(server)

        with ThreadPoolExecutor(max_workers=len(self.servers) * self.concurrency) as pool, \
                tqdm(total=len(bodies), desc=desc, unit="row") as bar:
            futures = {pool.submit(send, body): index for index, body in enumerate(bodies)}
            try:
                for future in as_completed(futures):
                    on_answer(futures[future], future.result())
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

