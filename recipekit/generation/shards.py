"""Generation split over data-parallel workers: disjoint shards, one process each, then a checked merge.

Used by the scorers (eval/run_*_eval.py), the backfill job and the SPPO driver's generate
stage. Row `id` belongs to shard `sha256(id) mod N`: the assignment depends on the id alone,
not on the order of the input or on which worker finishes first, and the merge can tell from
an id which shard should have written it. Shard I of N writes OUT/shards/0000I-of-0000N/NAME
(append-only and resumable like the single file); `--merge-shards N` writes OUT/NAME from the
N files, in input order, after checking that every row is there exactly once, in its own shard.

Three ways to run the shards, one process per GPU (or per --tensor-parallel-size GPUs):

    # this machine: R workers of the same command, each on its own GPUs, then the merge
    python eval/run_supervisor_eval.py ... --replicas 8
    # by hand (also one node each, for shards spread over several nodes)
    for i in $(seq 0 7); do CUDA_VISIBLE_DEVICES=$i python eval/run_supervisor_eval.py ... --shard $i/8 & done; wait
    python eval/run_supervisor_eval.py ... --merge-shards 8
    # torchrun / accelerate launch set RANK, WORLD_SIZE and LOCAL_RANK: the shard defaults to RANK/WORLD_SIZE
    torchrun --nproc_per_node 8 eval/run_supervisor_eval.py ...; python eval/run_supervisor_eval.py ... --merge-shards 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from recipekit.dataio.atomic import atomic_write_text
from recipekit.dataio.jsonl import json_line
from recipekit.errors import RecipekitError
from recipekit.generation.predictions import PredictionsError, PredictionStore, read_predictions

SHARDS_DIR = "shards"


class ShardError(RecipekitError, ValueError):
    """Shard options that do not fit together, or shard files that do not merge."""


def shard_of(row_id: Any, count: int) -> int:
    """The shard of a row id: a stable hash (Python's hash() changes between processes)."""
    digest = hashlib.sha256(str(row_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if shard_of(row["id"], self.count) == self.index]

    def dir(self, out: str | Path) -> Path:
        return Path(out) / SHARDS_DIR / f"{self.index:05d}-of-{self.count:05d}"


def parse_shard(text: str) -> Shard:
    index, sep, count = text.partition("/")
    try:
        return _checked(int(index), int(count))
    except (ValueError, ShardError):
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N with 0 <= I < N, e.g. 0/8") from None


def _checked(index: int, count: int) -> Shard:
    if not 0 <= index < count:
        raise ShardError(f"shard index {index} is not in 0..{count - 1} for {count} shards")
    return Shard(index, count)


@dataclass(frozen=True)
class Workers:
    """This process's part: every row (the default), one shard, or merging shards (started here first
    with `replicas`)."""

    shard: Shard | None = None
    merge: int = 0  # shard files to merge into the single output
    replicas: int = 0  # worker processes to start on this machine before merging
    gpus_each: int = 1
    command: tuple[str, ...] = ()  # this command, which each replica runs with --shard I/R

    def dir(self, out: str | Path) -> Path:
        """Where this process writes: its shard's directory, or OUT itself."""
        return self.shard.dir(out) if self.shard else Path(out)


def add_scale_out_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out (recipekit/generation/shards.py)")
    group.add_argument("--shard", type=parse_shard, metavar="I/N",
                       help="generate only shard I of N (0-based) into OUT/shards/, resumable; "
                            "default: RANK/WORLD_SIZE when torchrun or accelerate launch set them")
    group.add_argument("--num-shards", type=int, metavar="N", help="with --shard-index: the same as --shard I/N")
    group.add_argument("--shard-index", type=int, metavar="I")
    group.add_argument("--merge-shards", type=int, metavar="N",
                       help="merge the N shard files into the single output (every row exactly once), then go on")
    group.add_argument("--replicas", type=int, default=1, metavar="R",
                       help="start R workers of this command here, one shard and --tensor-parallel-size GPUs "
                            "each, then merge (default: 1, this process does everything)")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, module: str) -> argparse.Namespace:
    """parser.parse_args(argv) plus args.workers; bad scale-out options are a usage error (exit 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        args.workers = workers_from_args(args, (sys.executable, "-m", module, *argv), os.environ)
    except ShardError as err:
        parser.error(str(err))
    return args


def workers_from_args(args: argparse.Namespace, command: Sequence[str], env: dict[str, str]) -> Workers:
    """The scale-out options as a Workers; a shard not given defaults to RANK/WORLD_SIZE of a launcher."""
    for option, value in (("--num-shards", args.num_shards), ("--merge-shards", args.merge_shards),
                          ("--replicas", args.replicas), ("--tensor-parallel-size", args.tensor_parallel_size)):
        if value is not None and value < 1:
            raise ShardError(f"{option} must be at least 1, got {value}")
    if args.tensor_parallel_size > 1 and args.backend != "vllm":
        raise ShardError("--tensor-parallel-size splits a vLLM engine over GPUs: it needs --backend vllm")
    shard, launched = args.shard, False  # launched: the index is RANK, set by torchrun or accelerate launch
    if args.num_shards is not None or args.shard_index is not None:
        if shard:
            raise ShardError("give --shard I/N or --num-shards N --shard-index I, not both")
        count = args.num_shards if args.num_shards is not None else _env_int(env, "WORLD_SIZE", "--num-shards")
        index = args.shard_index if args.shard_index is not None else _env_int(env, "RANK", "--shard-index")
        shard, launched = _checked(index, count), args.shard_index is None
    roles = [name for name, given in (("--shard", shard), ("--merge-shards", args.merge_shards),
                                      ("--replicas", args.replicas > 1)) if given]
    if len(roles) > 1:
        raise ShardError(f"{' and '.join(roles)} do not go together: a process generates one shard, "
                         "merges the shards, or starts the replicas")
    if not roles and "WORLD_SIZE" in env and _env_int(env, "WORLD_SIZE", "--shard") > 1:
        shard, launched = _checked(_env_int(env, "RANK", "--shard"), _env_int(env, "WORLD_SIZE", "--shard")), True
    if launched:
        _pin_local_gpu(env, args.tensor_parallel_size)
        print(f"shard {shard}: its index from RANK, set by the launcher")
    if shard:
        return Workers(shard=shard, gpus_each=args.tensor_parallel_size)
    if args.replicas > 1:
        return Workers(merge=args.replicas, replicas=args.replicas, gpus_each=args.tensor_parallel_size,
                       command=tuple(command))
    return Workers(merge=args.merge_shards or 0, gpus_each=args.tensor_parallel_size)


def _env_int(env: Mapping[str, str], name: str, option: str) -> int:
    if name not in env:
        raise ShardError(f"{option}: not given, and {name} is not set (torchrun and accelerate launch set it)")
    try:
        return int(env[name])
    except ValueError:
        raise ShardError(f"{name}={env[name]!r} is not an integer") from None


def _pin_local_gpu(env: dict[str, str], gpus_each: int) -> None:
    """Under a launcher every process would load onto the first GPU: show each only its LOCAL_RANK's one."""
    if "LOCAL_RANK" not in env:
        return
    if gpus_each > 1:
        raise ShardError("a launcher gives each process one GPU; for --tensor-parallel-size > 1 use --replicas "
                         "or start the shards with CUDA_VISIBLE_DEVICES")
    local = _env_int(env, "LOCAL_RANK", "--shard")
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    env["CUDA_VISIBLE_DEVICES"] = visible[local] if local < len(visible) else str(local)


def gpu_groups(visible: Sequence[str], replicas: int, each: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each replica: `each` consecutive GPUs of those visible."""
    if len(visible) < replicas * each:
        raise ShardError(f"--replicas {replicas} x --tensor-parallel-size {each} needs {replicas * each} GPUs, "
                         f"{len(visible)} visible ({','.join(visible) or 'none'})")
    return [",".join(visible[i * each:(i + 1) * each]) for i in range(replicas)]


def _visible_gpus() -> list[str]:
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_replicas(workers: Workers, out: str | Path) -> None:
    """Run shard I of R in worker I, each on its own GPUs, and wait for all; a failed worker is an error
    naming its log, and a rerun resumes every shard where it stopped."""
    visible = _visible_gpus()
    groups = gpu_groups(visible, workers.replicas, workers.gpus_each) if visible else [None] * workers.replicas
    if not visible:
        print(f"no GPU visible: the {workers.replicas} workers run on the CPU")
    started = []
    try:
        for index, gpus in enumerate(groups):
            shard = Shard(index, workers.replicas)
            log = shard.dir(out) / "worker.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": gpus} if gpus is not None else {}))
            with open(log, "w", encoding="utf-8") as handle:  # the child keeps its own copy of the handle
                started.append((shard, log, subprocess.Popen(
                    [*workers.command, "--replicas", "1", "--shard", str(shard)], env=env,
                    stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)))
            print(f"shard {shard}: worker {started[-1][2].pid} on GPUs {gpus or '-'}, log {log}")
        failed = [(shard, log, code) for shard, log, process in started if (code := process.wait()) != 0]
    except BaseException:
        for _, _, process in started:
            process.kill()
        raise
    if failed:
        raise ShardError("; ".join(f"shard {shard} exited {code} (log {log})" for shard, log, code in failed)
                         + "; a rerun resumes every shard where it stopped")


def merge_shards(out: str | Path, name: str, count: int, rows: Sequence[dict[str, Any]], required: Iterable[str],
                 check: Callable[[Shard], None] | None = None) -> Path:
    """Write OUT/NAME from the `count` shard files of `rows`, in the order of `rows`; every row must be in
    exactly one file, its own shard's. `check(shard)` may refuse a shard's file for reasons of its caller.
    An existing OUT/NAME is kept only if it is that same merge."""
    out = Path(out)
    expected = [str(row["id"]) for row in rows]
    known = set(expected)
    merged: dict[str, dict[str, Any]] = {}
    for index in range(count):
        shard = Shard(index, count)
        path = shard.dir(out) / name
        if not path.exists():
            raise ShardError(f"{path}: missing, shard {shard} has not run; run it with --shard {shard}")
        if check:
            check(shard)
        try:
            found = read_predictions(path, required)
        except PredictionsError as err:
            raise ShardError(f"shard {shard}: {err} (rerunning --shard {shard} drops a half-written "
                             "last line and finishes the shard)") from err
        for row in found:
            key = str(row["id"])
            if key not in known:
                raise ShardError(f"{path}: row id {key!r} is not in the input; the input or --limit changed "
                                 "since the shards ran")
            owner = shard_of(key, count)
            if owner != index:
                raise ShardError(f"{path}: row id {key!r} belongs to shard {owner}/{count}, not {shard}: the "
                                 "shards overlap (a file from another split or another --shard?)")
            merged[key] = row
        missing = [key for key in expected if shard_of(key, count) == index and key not in merged]
        if missing:
            raise ShardError(f"{path}: {len(missing)} of shard {shard}'s rows are missing (first: id "
                             f"{missing[0]!r}); rerun --shard {shard} to finish it")
    text = "".join(json_line(merged[key]) for key in expected)
    target = out / name
    if target.exists() and target.read_text(encoding="utf-8") != text:
        raise ShardError(f"{target} exists and is not the merge of the {count} shards; move it away to merge")
    atomic_write_text(target, text)
    print(f"merged {count} shards: {len(expected)} rows -> {target}")
    return target


def fill(workers: Workers, out: str | Path, name: str, rows: Sequence[dict[str, Any]], required: Iterable[str],
         generate: Callable[[list[dict[str, Any]], PredictionStore], None],
         check: Callable[[Shard], None] | None = None) -> Path:
    """OUT/NAME for `rows`, or this process's shard file: `generate(rows, store)` appends the rows not yet
    in `store`; a merging process starts the replicas (if asked) and merges instead. Returns the file."""
    required = tuple(required)
    if workers.replicas:
        run_replicas(workers, out)
    if workers.merge:
        return merge_shards(out, name, workers.merge, rows, required, check)
    path = workers.dir(out) / name
    if workers.shard:  # an empty shard file still tells the merge that the shard ran
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    store = PredictionStore(path, required)
    mine = workers.shard.select(rows) if workers.shard else list(rows)
    generate(mine, store)
    in_input_order(path, mine, required)
    return path


def in_input_order(path: Path, rows: Sequence[dict[str, Any]], required: Iterable[str]) -> None:
    """Rewrite PATH with its rows in the order of `rows` (rows finish in any order, e.g. a vLLM server's), so
    that what reads it next, such as a training set, does not depend on which request finished first."""
    if not path.exists():
        return
    position = {str(row["id"]): index for index, row in enumerate(rows)}
    found = read_predictions(path, required)
    ordered = sorted(found, key=lambda row: position.get(str(row["id"]), len(position)))
    if ordered != found:
        atomic_write_text(path, "".join(json_line(row) for row in ordered))
