"""recipekit/testing/warm_axolotl.py: a run forked from the warm server is the `axolotl` command it
stands for (output, exit status), so is a `python -m MODULE` run (a launcher's process command),
the process a launcher starts forks from the server too, a run whose environment differs starts
cold, and killing the client kills the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipekit.paths import RECIPES_DIR
from recipekit.testing.offline import offline_env
from recipekit.testing.smoke import smoke_overrides, write_run_config
from recipekit.testing.warm_axolotl import STAND_INS_VAR, command, write_stand_ins
from recipekit.training.recipe_config import load_recipe

AXOLOTL = str(Path(sys.executable).parent / "axolotl")


def _env(server) -> dict[str, str]:
    """The environment of the server and its clients: offline, PYTHON_EXEC its own client, one thread."""
    env = {**offline_env(), "PYTHON_EXEC": str(server.with_name("python-warm")), "OMP_NUM_THREADS": "1"}
    env.pop(STAND_INS_VAR, None)  # the session's
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "server.sock"
    write_stand_ins(path.parent, path)
    log = open(path.with_suffix(".log"), "w", encoding="utf-8")
    process = subprocess.Popen(command("serve", path), env=_env(path), stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT)
    path.with_suffix(".pid").write_text(str(process.pid), encoding="utf-8")
    yield path
    process.kill()
    process.wait()
    log.close()


def _client(server, *args, env=None, **kwargs):
    return subprocess.run(command(server, AXOLOTL, *args), env=env or _env(server), capture_output=True, text=True,
                          timeout=600, **kwargs)


def _log(server) -> str:
    return server.with_suffix(".log").read_text(encoding="utf-8")


def _served(server) -> int:
    """How many runs the server turned away (ran cold) so far."""
    return _log(server).count("run cold")


def test_a_warm_run_is_the_command_it_stands_for(server):
    for args in (["no-such-command"], ["preprocess", "--help"]):  # a failure and a subcommand (--help: below)
        cold = subprocess.run([AXOLOTL, *args], env=_env(server), capture_output=True, text=True, timeout=600)
        warm = _client(server, *args)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), args
        assert warm.stderr.splitlines()[-1:] == cold.stderr.splitlines()[-1:], args
    assert _served(server) == 0


def _python(server, *args, **kwargs):
    return subprocess.run(command(server, "--python", *args),
                          env=_env(server), capture_output=True, text=True, timeout=600, **kwargs)


def test_a_python_module_run_is_the_interpreters_and_other_forms_run_cold(server, tmp_path):
    data = tmp_path / "in.json"
    data.write_text('{"b": 1, "a": [2]}', encoding="utf-8")
    (tmp_path / "crashes.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", encoding="utf-8")
    turned_away = _served(server)
    for args in (["-u", "-m", "json.tool", "--sort-keys", str(data)], ["-m", "json.tool", "--no-such-flag"],
                 ["-m", "crashes"]):  # a module of the working directory, as `python -m` finds it
        cold = subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(server), capture_output=True, text=True,
                              timeout=600)
        warm = _python(server, *args, cwd=tmp_path)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), args
    assert cold.returncode == -signal.SIGKILL and _served(server) == turned_away
    done = _python(server, "-c", "print(6 * 7)")  # not `-m MODULE`: this client runs it itself
    assert done.stdout == "42\n" and _served(server) == turned_away + 1
    assert _log(server).endswith("run cold: not `python [-u] -m MODULE`\n")


def test_a_run_whose_environment_differs_at_import_time_starts_cold(server, tmp_path):
    turned_away = _served(server)
    done = _client(server, "--help", env={**_env(server), "HF_HOME": str(tmp_path / "elsewhere")})
    assert done.returncode == 0 and "Usage" in done.stdout
    assert _served(server) == turned_away + 1
    assert _log(server).endswith("run cold: environment differs in ['HF_HOME']\n")


def test_the_process_a_launcher_starts_forks_from_the_server_too(server, tmp_path):
    """`accelerate launch` starts its process with its own interpreter, PYTHON_EXEC in a warm run, and
    with ACCELERATE_* variables that are read at run time: both commands fork from the server."""
    (tmp_path / "parent.py").write_text("import os\nprint(os.getppid())\n", encoding="utf-8")
    turned_away = _served(server)
    done = _python(server, "-m", "accelerate.commands.accelerate_cli", "launch", "--num_processes", "1",
                   "-m", "parent", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # a fork of the server, not a child of the accelerate run
    assert int(done.stdout.split()[-1]) == int(server.with_suffix(".pid").read_text())
    assert _served(server) == turned_away


@pytest.mark.train
def test_killing_the_client_kills_the_run(server, tmp_path):
    recipe = RECIPES_DIR / "cs_chatbot_gemma3_4b.yml"
    config, config_path = write_run_config(recipe, tmp_path, smoke_overrides(recipe, load_recipe(recipe), tmp_path, 10_000))
    log = tmp_path / "train.log"
    with open(log, "w", encoding="utf-8") as out:
        client = subprocess.Popen(command(server, AXOLOTL, "train", config_path, "--launcher", "python"), cwd=tmp_path,
                                  env=_env(server), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "'loss'" not in log.read_text(encoding="utf-8"):  # training, 10,000 steps to go
            assert client.poll() is None and time.monotonic() < deadline, log.read_text(encoding="utf-8")[-2000:]
            time.sleep(0.2)
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
    time.sleep(1)
    size = log.stat().st_size
    time.sleep(3)
    assert log.stat().st_size == size, "the run kept writing after its client was killed"


def test_a_server_whose_warm_up_failed_turns_every_run_away_at_once(tmp_path):
    path = tmp_path / "broken.sock"
    code = ("import sys, recipekit.testing.warm_axolotl as w\n"
            "def fail(): raise ImportError('no stack here')\n"
            f"w._warm_up = fail\nw.serve({str(path)!r})\n")
    with open(tmp_path / "server.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-c", code], env=offline_env(), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        start = time.monotonic()
        done = _client(path, "--help")
        assert done.returncode == 0 and "Usage: axolotl" in done.stdout  # run cold, well before the client's timeout
        assert time.monotonic() - start < 120
        log = (tmp_path / "server.log").read_text(encoding="utf-8")
        assert "no stack here" in log and "run cold: the warm-up failed" in log
    finally:
        process.kill()
        process.wait()
