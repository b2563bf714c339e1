"""`axolotl COMMAND ...` forked from a process that has imported Axolotl's stack already.

A test session starts dozens of tiny `axolotl train` runs, and each spends about 12 s of CPU
importing torch, transformers, TRL, PEFT and Axolotl before its first step. A warm server
imports them once; every run is then a fork of it that calls Axolotl's own CLI entry point
(`axolotl.cli.main:main`, what the `axolotl` script runs) with the run's arguments, working
directory, environment and standard streams. It also runs `python [-u] -m MODULE ARGS...`,
the command torchrun and accelerate start each process with: with stand-ins for both
launchers first on a run's PATH (STAND_INS_VAR) and the client as PYTHON_EXEC, the launchers
of a `--launcher torchrun|accelerate` run and the processes they start fork from the server too.

    python -m recipekit.testing.warm_axolotl serve SOCKET                  # the server
    python -m recipekit.testing.warm_axolotl SOCKET AXOLOTL ARGS...        # one run, as `AXOLOTL ARGS...`
    python -m recipekit.testing.warm_axolotl SOCKET --python -m MODULE ... # one run, as `python -m MODULE ...`

The client passes its own stdin, stdout and stderr, exits with the run's status, and when it is
killed the server kills the run too. It runs AXOLOTL ARGS itself when no server answers, or when
its environment differs from the server's in a variable read at import time.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recipekit.cli import exit_status

# Environment read while importing the stack (hub and cache locations, offline switches, paths):
# a run whose values differ must start from scratch.
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "DATASETS", "TOKENIZERS", "XDG_", "TORCH", "PYTHON",
                        "TRITON", "AXOLOTL", "DO_NOT_TRACK", "NUMBA", "WANDB", "ACCELERATE", "CUDA", "KMP_", "OMP_")
# What torchrun and accelerate launch set under those prefixes for the processes they start:
# read when a process builds its process group or accelerate's state, not at import.
LAUNCHED_RUNTIME_PREFIXES = ("TORCHELASTIC_", "TORCH_NCCL_", "ACCELERATE_")
# A directory of stand-ins for commands (the launchers) that a run finds first on its PATH.
STAND_INS_VAR = "WARM_AXOLOTL_BIN"
# The stand-ins a test session writes (write_stand_ins): PYTHON_EXEC, and the launchers by name.
STAND_INS = {"python-warm": [], "accelerate": ["-m", "accelerate.commands.accelerate_cli"],
             "torchrun": ["-m", "torch.distributed.run"]}
SERVER_START_TIMEOUT = 300  # seconds a client waits for the server's socket before running cold
_HEADER = struct.Struct("!I")


def _differing(env: dict[str, str], started: dict[str, str], imported_env: dict[str, dict[str, str | None]]) -> list[str]:
    """The import-time variables of `env` that differ from the server's environment, counting a
    value that importing the stack sets (a run's parent may have imported it too) as the same."""
    keys = {k for k in (*env, *started) if k.startswith(IMPORT_TIME_PREFIXES) and not k.startswith(LAUNCHED_RUNTIME_PREFIXES)}
    return sorted(k for k in keys if env.get(k) != started.get(k)
                  and not (k in imported_env and env.get(k) == imported_env[k]["after"]))


def _send(conn: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(conn, [_HEADER.pack(len(data))], fds)
    else:
        conn.sendall(_HEADER.pack(len(data)))
    conn.sendall(data)


def _receive(conn: socket.socket, with_fds: int = 0) -> tuple[dict | None, list[int]]:
    if with_fds:
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, with_fds)
    else:
        header, fds = conn.recv(_HEADER.size), []
    if len(header) < _HEADER.size:
        return None, fds
    (size,) = _HEADER.unpack(header)
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


def command(*args: object) -> list[str]:
    """`python -m recipekit.testing.warm_axolotl ARGS...` with this interpreter: the server with
    `serve SOCKET`, a client with `SOCKET ...`."""
    return [sys.executable, "-m", "recipekit.testing.warm_axolotl", *map(str, args)]


@contextmanager
def serving(path: str | Path, log_path: str | Path) -> Iterator[subprocess.Popen]:
    """A server at socket PATH (its output in LOG_PATH) through which every `axolotl` command that
    recipekit.training.runner starts goes, until the block ends and the server is killed."""
    import recipekit.training.runner as runner

    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(command("serve", path), stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)
    runner.RUN_PREFIX[:] = command(path)
    try:
        yield server
    finally:
        runner.RUN_PREFIX.clear()
        server.kill()
        server.wait()


def write_stand_ins(directory: Path, path: str | Path) -> Path:
    """The STAND_INS in `directory`, each a client of the server at `path` running its command as
    `python [ARGS] ...`; returns python-warm's path, for PYTHON_EXEC."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, python_args in STAND_INS.items():
        script = directory / name
        script.write_text(f'#!/bin/sh\nexec {shlex.join(command(path, "--python", *python_args))} "$@"\n', encoding="utf-8")
        script.chmod(0o755)
    return directory / "python-warm"


# --- server ---

def _run_child(request: dict, fds: list[int], imported_env: dict[str, dict[str, str | None]]) -> None:
    """In the forked child: become the run, then exit with its status. `imported_env` is what
    importing the stack set in the environment (TOKENIZERS_PARALLELISM and the like): a cold run
    would have set it too, except where the run's own environment chose another value."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in imported_env.items():
            if key not in request["env"] or request["env"][key] == value["before"]:
                os.environ[key] = value["after"]
        stand_ins = os.environ.get(STAND_INS_VAR)
        if stand_ins and not os.environ.get("PATH", "").startswith(stand_ins + os.pathsep):
            os.environ["PATH"] = f"{stand_ins}{os.pathsep}{os.environ.get('PATH', '')}"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            code = _run_module(request["argv"]) if request.get("python") else _run_axolotl(request["argv"])
        except SystemExit as exit_:
            code = exit_status(exit_.code)
    except BaseException:  # the run's own crash, reported as the interpreter would
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed stream at exit has nothing left to say
                pass
        os._exit(code)


def _run_axolotl(argv: list[str]) -> int:
    sys.argv = argv  # click names the program after sys.argv[0]
    # __main__ without a file, as under `python -c`: a worker process that datasets spawns (it
    # writes every prepared dataset through a spawned pool) then starts without re-running the
    # `axolotl` script, whose one import, the whole stack, is what this server spares (4 s of
    # CPU a run). The script defines nothing a worker needs.
    script = sys.modules["__main__"]
    script.__spec__, script.__package__ = None, None
    script.__dict__.pop("__file__", None)
    from axolotl.cli.main import main

    return main() or 0


def _python_module(args: list[str]) -> tuple[str, list[str], bool] | None:
    """(module, its arguments, unbuffered) of the interpreter arguments `[-u] -m MODULE ...`; None for any other form."""
    unbuffered = args[:1] == ["-u"]
    rest = args[1:] if unbuffered else args
    if len(rest) < 2 or rest[0] != "-m":
        return None
    return rest[1], rest[2:], unbuffered


def _run_module(args: list[str]) -> int:
    """`python [-u] -m MODULE ARGS...` in this process, as the interpreter runs it."""
    import runpy

    module, module_args, unbuffered = _python_module(args)
    if unbuffered:
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=True)
    sys.argv = ["-m", *module_args]  # runpy puts the module's file in sys.argv[0]
    # the interpreter a launcher starts its processes with (accelerate: sys.executable) is the
    # client when PYTHON_EXEC names it, so that they fork from the server as well
    sys.executable = os.environ.get("PYTHON_EXEC", sys.executable)
    sys.path.insert(0, os.getcwd())  # as `python -m` does
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


# Imported by the server beyond the CLI: what every run would import on its first step.
WARM_MODULES = ("axolotl.cli.main", "axolotl.cli.train", "axolotl.cli.preprocess", "axolotl.train",
                "axolotl.core.builders", "axolotl.core.trainers.base", "axolotl.core.trainers.dpo",
                "axolotl.loaders.model", "axolotl.utils.data.sft", "axolotl.utils.data.rl", "peft", "trl",
                *(f"transformers.models.{family}.modeling_{family}" for family in
                  ("gemma2", "gemma3", "gemma4", "gemma4_unified", "qwen3", "llama")))


def _warm_up() -> None:
    """Import WARM_MODULES, and have numba compile the sample-packing functions (seconds a run)."""
    import gc
    import importlib

    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:  # a module this version lacks: its runs import what they need
            print(f"warm_axolotl: not imported: {name}: {err}", file=sys.stderr)
    import numpy as np
    from axolotl.utils.samplers import multipack

    lengths = np.array([3, 5, 2, 7], dtype=np.int64)
    multipack.allocate_sequentially(lengths, rank=0, bin_capacity=8, num_ranks=1)
    multipack.pack_parallel(lengths, bin_capacity=8, group_size=4, bin_size=8, num_processes=1, safe_mode=True)
    multipack.ffd_check(lengths, 8, 4)
    # Out of the collector's reach: a run's gc.collect() calls (Axolotl makes several) then skip the
    # imported stack instead of walking it, and do not touch, so copy, the pages a fork shares.
    gc.freeze()


def _why_cold(request: dict | None, broken: bool, started: dict[str, str],
              imported_env: dict[str, dict[str, str | None]]) -> str | None:
    """Why the server turns `request` away (its client then runs it itself); None when it forks it."""
    if request is None:
        return "the request was cut short"
    if broken:
        return "the warm-up failed"
    if request.get("python") and _python_module(request["argv"]) is None:
        return "not `python [-u] -m MODULE`"
    differing = _differing(request["env"], started, imported_env)
    return f"environment differs in {differing}" if differing else None


def serve(path: str) -> None:
    before = dict(os.environ)
    try:
        _warm_up()
        broken = False
    except Exception:  # every run starts cold at once (and fails there, if the stack is broken)
        import traceback

        traceback.print_exc()
        broken = True
    imported_env = {k: {"before": before.get(k), "after": v} for k, v in os.environ.items() if before.get(k) != v}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.replace(path + ".tmp", path)  # clients see the socket only once it is bound
    listener.listen(64)
    runs: dict[socket.socket, int] = {}  # client connection -> pid of its run
    while True:
        ready, _, _ = select.select([listener, *runs], [], [], 0.05)
        for conn in ready:
            if conn is listener:
                client, _ = listener.accept()
                request, fds = _receive(client, with_fds=3)
                cold = _why_cold(request, broken, before, imported_env)
                if cold:
                    print(f"warm_axolotl: run cold: {cold}", file=sys.stderr, flush=True)
                    _send(client, {"accepted": False})
                    for fd in fds:
                        os.close(fd)
                    client.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _run_child(request, fds, imported_env)
                for fd in fds:
                    os.close(fd)
                runs[client] = pid
                _send(client, {"accepted": True, "pid": pid})
            else:  # the client went away (killed): so does its run
                os.kill(runs[conn], signal.SIGKILL)
        for conn, pid in list(runs.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                try:
                    _send(conn, {"status": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass
                conn.close()
                del runs[conn]


# --- client ---

def run(path: str, argv: list[str], python: bool = False) -> int:
    """`argv` through the server at `path`, or on its own when the server cannot take it;
    with `python`, `argv` are the arguments of this interpreter."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        _send(conn, {"argv": argv, "python": python, "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
        answer, _ = _receive(conn)
    except OSError:
        answer = None
    if not answer or not answer.get("accepted"):  # cold: this process becomes the run
        os.execv(sys.executable, [sys.executable, *argv]) if python else os.execv(argv[0], argv)
    for sig in (signal.SIGTERM, signal.SIGINT):  # passed on, as a shell would
        signal.signal(sig, lambda signum, _frame: os.kill(answer["pid"], signum))
    result, _ = _receive(conn)
    status = 1 if result is None else int(result["status"])
    if status < 0:  # the run died of a signal: so does this process, so its parent sees what a cold run shows
        if -status not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def main(args: list[str] | None = None) -> int:
    args = sys.argv[1:] if args is None else args
    if len(args) == 2 and args[0] == "serve":
        serve(args[1])
        return 0
    if len(args) < 2 or args[1:] == ["--python"]:
        print(__doc__, file=sys.stderr)
        return 2
    if args[1] == "--python":
        return run(args[0], args[2:], python=True)
    return run(args[0], args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
