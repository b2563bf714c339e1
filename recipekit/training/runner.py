"""The one way to run the Axolotl CLI: `axolotl COMMAND CONFIG [OPTIONS]` with this environment's
`axolotl`, its output kept in a log file (and shown live when asked), and the metrics the trainer
logged read back from that output.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What a finished `axolotl train` leaves in output_dir: an adapter, or whole weights (one file or shards).
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
_LOG_DICT = re.compile(r"\{'(?:loss|train_loss)'.*?\}")
# Lines of the output quoted in the error of a failed command.
ERROR_TAIL_LINES = 40
# Put before every `run_axolotl` command line; empty here. The test session puts the client of
# recipekit/testing/warm_axolotl.py there, which forks each run from an interpreter that has
# imported Axolotl already. Commands built with `axolotl_command` alone (a process group a test
# kills from outside) never get it.
RUN_PREFIX: list[str] = []


class AxolotlError(RuntimeError):
    """An Axolotl command that failed, did not finish in time, or did not train."""


def axolotl_command(command: str, config_path: Path, options: Sequence[str] = (),
                    env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The `axolotl COMMAND CONFIG [OPTIONS]` command line of this environment's Axolotl, and a copy
    of `env` (default: os.environ) with its bin directory first on PATH (torchrun, accelerate)."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return [str(bin_dir / "axolotl"), command, str(config_path), *options], env


def run_axolotl(command: str, config_path: Path, log_path: Path, *, options: Sequence[str] = (),
                cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float | None = None,
                echo: bool = False, error: type[Exception] = AxolotlError, expected_status: int = 0) -> str:
    """Run `axolotl COMMAND CONFIG [OPTIONS]`; return its output (stdout and stderr).

    The output goes to `log_path` line by line as it comes (and to stdout with `echo`). An exit
    status other than `expected_status` (a run meant to crash: -SIGKILL), or a run still going after
    `timeout` seconds (then killed), raises `error` (the caller's own error type) naming the log.
    """
    argv, env = axolotl_command(command, config_path, options, env)
    argv = [*RUN_PREFIX, *argv]
    lines: list[str] = []
    timed_out = threading.Event()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1,
    ) as process:

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer is not None:
            timer.start()
        try:
            for line in process.stdout:  # type: ignore[union-attr]
                log.write(line)
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
        finally:
            if timer is not None:
                timer.cancel()
    output = "".join(lines)
    tail = "\n".join(output.splitlines()[-ERROR_TAIL_LINES:])
    if timed_out.is_set():
        raise error(f"axolotl {command} {config_path}: still running after {timeout} s, killed; log {log_path}\n{tail}")
    if process.returncode != expected_status:
        expected = f" instead of {expected_status}" if expected_status else ""
        raise error(f"axolotl {command} {config_path} exited {process.returncode}{expected}; log {log_path}\n{tail}")
    return output


def preprocess_options(config: dict[str, Any]) -> list[str]:
    """`axolotl preprocess` options the recipe needs, as its header gives them.

    preprocess prints a sample row by default, through Axolotl's check_example_labels, which reads
    `input_ids`; a reward model's Bradley-Terry rows hold `input_ids_chosen` and `input_ids_rejected`
    only, so it stops with KeyError 'input_ids' after the data is prepared. No sample, no error.
    """
    return ["--debug-num-examples", "0"] if config.get("reward_model") or config.get("process_reward_model") else []


def launch_options(nproc: int) -> list[str]:
    """`axolotl train` options that start `nproc` processes on this machine with torchrun.

    Not accelerate: `accelerate launch --cpu` starts one process per machine unless given an MPI hostfile.
    """
    return ["--launcher", "torchrun", "--", "--standalone", "--nproc_per_node", str(nproc)]


def parse_log_records(text: str) -> list[dict[str, Any]]:
    """The metric dicts the Hugging Face trainer prints, in order."""
    records = []
    for match in _LOG_DICT.finditer(text):
        try:
            records.append(ast.literal_eval(match.group(0)))
        except (ValueError, SyntaxError):
            continue
    return records


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_training(output: str, output_dir: Path, log_path: Path, what: str,
                   error: type[Exception] = AxolotlError) -> tuple[list[dict[str, Any]], list[float]]:
    """The records and losses an `axolotl train` logged in `output`; raise `error` (naming `what` and
    the log) unless it logged finite losses and wrote weights to `output_dir`."""
    records = parse_log_records(output)
    losses = [_as_float(r["loss"]) for r in records if "loss" in r]
    if not losses:
        raise error(f"{what}: no training loss was logged; see {log_path}")
    if not all(math.isfinite(x) for x in losses):
        raise error(f"{what}: non-finite training loss {losses}; see {log_path}")
    if not any((Path(output_dir) / name).exists() for name in WEIGHT_FILES):
        raise error(f"{what}: no weights written to {output_dir}; see {log_path}")
    return records, losses
