"""Generation split into shards (recipekit/generation/shards.py): the union of the shards is the single-process
output, a killed shard resumes, and a merge refuses shard files that lose or repeat a row.

Shard runs and the single run use batch size 1: batching rows that the sharded runs do not
batch together would change padding, and so the floating-point sums behind greedy decoding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import read_jsonl, stand_in_model

from recipekit.backfill import job
from recipekit.generation import shards
from recipekit.generation.predictions import PredictionsError, PredictionStore, _drop_torn_last_line, read_predictions
from recipekit.generation.shards import Shard, ShardError, Workers, add_scale_out_args, merge_shards, shard_of
from recipekit.sppo import driver
from recipekit.supervisor.scoring import PREDICTION_FIELDS
from recipekit.supervisor.scoring import main as supervisor_eval
from recipekit.testing import FIXTURES_DIR

TEST_ROWS = FIXTURES_DIR / "prepared" / "supervisor_stage2_test.jsonl"
LIMIT = 12


def by_id(path):
    return {row["id"]: row for row in read_jsonl(path)}


def scorer_argv(model, out, *extra):
    return ["--model", str(model), "--data", str(TEST_ROWS), "--out", str(out), "--max-new-tokens", "8",
            "--batch-size", "1", "--limit", str(LIMIT), *map(str, extra)]


def shard_file(out, index, count, name="predictions.jsonl"):
    return Shard(index, count).dir(out) / name


@pytest.fixture(scope="module")
def gemma4(tiny_model):
    return tiny_model("gemma4")


@pytest.fixture(scope="module")
def single(gemma4, tmp_path_factory):
    """The supervisor scorer in one process: the output the shards must add up to."""
    out = tmp_path_factory.mktemp("single") / "eval"
    assert supervisor_eval(scorer_argv(gemma4, out)) == 0
    return out


# --- assignment and options -------------------------------------------------------------------------


def test_a_row_belongs_to_one_shard_by_its_id_alone():
    ids = [f"row-{i}" for i in range(40)]
    rows = [{"id": i} for i in ids]
    parts = [Shard(i, 3).select(rows) for i in range(3)]
    assert sorted(r["id"] for part in parts for r in part) == sorted(ids)  # a partition: nothing lost or repeated
    assert all(parts)
    # the input's order does not matter, nor does the process (Python's own hash() is salted per process)
    assert [Shard(i, 3).select(reversed(rows)) for i in range(3)] == [part[::-1] for part in parts]
    assert [shard_of(f"row-{i}", 4) for i in range(8)] == [1, 1, 0, 0, 3, 0, 2, 1]  # sha256, pinned
    assert shard_of(7, 4) == shard_of("7", 4)  # ids compare as strings, as in the predictions files


def options(*argv, env=None, backend="transformers"):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default=backend)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    add_scale_out_args(parser)
    args = parser.parse_args(argv)
    return shards.workers_from_args(args, ("python", "-m", "tool", *argv), {} if env is None else env)


def test_shard_options_and_their_launcher_defaults():
    assert options("--shard", "1/4") == options("--num-shards", "4", "--shard-index", "1") == Workers(Shard(1, 4))
    assert options() == Workers()
    assert options("--merge-shards", "4") == Workers(merge=4)
    assert options("--replicas", "2", "--tensor-parallel-size", "2", backend="vllm") == Workers(
        merge=2, replicas=2, gpus_each=2, command=("python", "-m", "tool", "--replicas", "2",
                                                   "--tensor-parallel-size", "2"))
    # torchrun / accelerate launch: RANK and WORLD_SIZE give the shard, LOCAL_RANK the one GPU it sees
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert options(env=env) == Workers(Shard(5, 8))
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    env = {"RANK": "3", "LOCAL_RANK": "3"}
    assert options("--num-shards", "8", env=env) == Workers(Shard(3, 8)) and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert options("--merge-shards", "8", env={"RANK": "3", "WORLD_SIZE": "8"}) == Workers(merge=8)


@pytest.mark.parametrize("argv, message", [
    (("--shard", "0/2", "--merge-shards", "2"), "--shard and --merge-shards do not go together"),
    (("--shard", "0/2", "--num-shards", "2", "--shard-index", "0"), "not both"),
    (("--replicas", "2", "--num-shards", "2", "--shard-index", "1"), "--shard and --replicas"),
    (("--num-shards", "2",), "--shard-index: not given, and RANK is not set"),
    (("--num-shards", "2", "--shard-index", "2"), "shard index 2 is not in 0..1"),
    (("--tensor-parallel-size", "2",), "needs --backend vllm"),
    (("--replicas", "0",), "--replicas must be at least 1"),
])
def test_scale_out_options_that_cannot_work_are_refused(argv, message):
    with pytest.raises(ShardError, match=message):
        options(*argv)


def test_a_launcher_environment_that_makes_no_sense_is_refused():
    with pytest.raises(ShardError, match="WORLD_SIZE='eight' is not an integer"):
        options(env={"WORLD_SIZE": "eight", "RANK": "0"})
    with pytest.raises(ShardError, match="--shard: not given, and RANK is not set"):
        options(env={"WORLD_SIZE": "8"})


def test_a_bad_shard_is_a_usage_error(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="transformers")
    add_scale_out_args(parser)
    with pytest.raises(SystemExit) as stop:
        shards.parse_args(parser, ["--shard", "2/2"], "tool")
    assert stop.value.code == 2
    assert "'2/2': expected I/N with 0 <= I < N" in capsys.readouterr().err


def test_replicas_get_their_own_gpus_and_their_shard(tmp_path, monkeypatch):
    assert shards.gpu_groups(list("01234567"), 4, 2) == ["0,1", "2,3", "4,5", "6,7"]
    with pytest.raises(ShardError, match="needs 9 GPUs, 8 visible"):
        shards.gpu_groups(list("01234567"), 3, 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    show = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], sys.argv[1:])"
    shards.run_replicas(Workers(merge=2, replicas=2, gpus_each=2, command=(sys.executable, "-c", show)), tmp_path)
    logs = [(Shard(i, 2).dir(tmp_path) / "worker.log").read_text() for i in range(2)]
    assert logs == ["4,5 ['--replicas', '1', '--shard', '0/2']\n", "6,7 ['--replicas', '1', '--shard', '1/2']\n"]
    failing = Workers(merge=2, replicas=2, command=(sys.executable, "-c", "import sys; sys.exit('0/2' in sys.argv)"))
    with pytest.raises(ShardError, match=r"shard 0/2 exited 1 \(log .*00000-of-00002/worker.log\); a rerun resumes"):
        shards.run_replicas(failing, tmp_path)


# --- a write cut short --------------------------------------------------------------------------------


def test_a_half_written_last_line_is_dropped_when_resuming(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "out', encoding="utf-8")
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:3: not valid JSON"):
        read_predictions(path)  # a reader never rewrites the file
    assert PredictionStore(path).done == {"a", "b"}
    assert path.read_text(encoding="utf-8") == '{"id": "a"}\n{"id": "b"}\n'
    assert "dropped a half-written last line (16 bytes)" in capsys.readouterr().out
    path.write_text('{"id": "a"}\n' + "x" * 50, encoding="utf-8")
    _drop_torn_last_line(path, block=8)  # the newline is several blocks back
    assert path.read_text(encoding="utf-8") == '{"id": "a"}\n'
    path.write_text("x" * 50, encoding="utf-8")
    _drop_torn_last_line(path, block=8)
    assert path.read_text(encoding="utf-8") == ""


# --- the scorers ----------------------------------------------------------------------------------------


def test_scorer_shards_merge_into_the_single_process_predictions(single, gemma4, tmp_path, capsys):
    out = tmp_path / "eval"
    for index in range(2):
        assert supervisor_eval(scorer_argv(gemma4, out, "--shard", f"{index}/2")) == 0
        assert "score with --merge-shards 2" in capsys.readouterr().out
    assert not (out / "predictions.jsonl").exists() and not (out / "metrics.json").exists()
    parts = [by_id(shard_file(out, i, 2)) for i in range(2)]
    assert all(parts) and not set(parts[0]) & set(parts[1])
    assert all(shard_of(key, 2) == i for i, part in enumerate(parts) for key in part)
    assert json.loads((Shard(1, 2).dir(out) / "manifest.json").read_text())["config"]["shard"] == "1/2"

    assert supervisor_eval(scorer_argv(gemma4, out, "--merge-shards", "2")) == 0
    assert "merged 2 shards: 12 rows" in capsys.readouterr().out
    merged, expected = read_jsonl(out / "predictions.jsonl"), by_id(single / "predictions.jsonl")
    assert len(merged) == LIMIT and {row["id"]: row for row in merged} == expected  # same rows, same outputs
    assert [row["id"] for row in merged] == [row["id"] for row in read_jsonl(TEST_ROWS)[:LIMIT]]  # input order
    assert json.loads((out / "metrics.json").read_text()) == json.loads((single / "metrics.json").read_text())
    assert supervisor_eval(scorer_argv(gemma4, out, "--merge-shards", "2")) == 0  # the same merge again is fine


def test_a_killed_shard_resumes_and_the_replicas_finish_the_merge(single, gemma4, tmp_path):
    out = tmp_path / "eval"
    killed = shard_file(out, 1, 2)
    share = len([r for r in read_jsonl(TEST_ROWS)[:LIMIT] if shard_of(r["id"], 2) == 1])
    worker = subprocess.Popen([sys.executable, "-m", "recipekit.supervisor.scoring",
                               *scorer_argv(gemma4, out, "--shard", "1/2")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed.exists() and killed.read_text(encoding="utf-8").count("\n") >= 1):
        assert worker.poll() is None and time.monotonic() < deadline, "the shard ended before it could be killed"
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = killed.read_text(encoding="utf-8")
    assert 1 <= before.count("\n") < share
    # and a crash in the middle of the next write
    killed.write_text(before + '{"id": "sv-00', encoding="utf-8")

    assert supervisor_eval(scorer_argv(gemma4, out, "--replicas", "2")) == 0
    log = (Shard(1, 2).dir(out) / "worker.log").read_text(encoding="utf-8")
    assert "dropped a half-written last line" in log
    assert f"{share} rows, {before.count(chr(10))} already in" in log
    finished = killed.read_text(encoding="utf-8").splitlines()
    assert set(before.splitlines()) <= set(finished)  # resumed, not redone: the rows written before are kept as they were
    assert [json.loads(line)["id"] for line in finished] == [  # and the shard's file is in input order
        r["id"] for r in read_jsonl(TEST_ROWS)[:LIMIT] if shard_of(r["id"], 2) == 1]
    merged = read_jsonl(out / "predictions.jsonl")
    assert len(merged) == LIMIT and {row["id"]: row for row in merged} == by_id(single / "predictions.jsonl")


@pytest.fixture()
def shard_files(single, tmp_path):
    """The single run's predictions split by hand into the two shards' files."""
    out = tmp_path / "eval"
    rows = read_jsonl(single / "predictions.jsonl")
    for index in range(2):
        path = shard_file(out, index, 2)
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows if shard_of(r["id"], 2) == index))
    return out, [{"id": r["id"]} for r in read_jsonl(TEST_ROWS)[:LIMIT]]


def test_a_merge_refuses_a_missing_shard_with_a_clear_message(shard_files, gemma4, capsys):
    out, _ = shard_files
    shutil.rmtree(Shard(1, 2).dir(out))
    assert supervisor_eval(scorer_argv(gemma4, out, "--merge-shards", "2")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"{shard_file(out, 1, 2)}: missing, shard 1/2 has not run; run it with --shard 1/2" in err
    assert not (out / "predictions.jsonl").exists()


def test_a_merge_refuses_overlapping_shards(shard_files):
    out, rows = shard_files
    stray = read_jsonl(shard_file(out, 0, 2))[0]
    with open(shard_file(out, 1, 2), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(stray) + "\n")
    with pytest.raises(ShardError, match=f"row id '{stray['id']}' belongs to shard 0/2, not 1/2: the shards overlap"):
        merge_shards(out, "predictions.jsonl", 2, rows, PREDICTION_FIELDS)
    with pytest.raises(ShardError, match=r"00000-of-00003/predictions.jsonl: missing, shard 0/3 has not run"):
        merge_shards(out, "predictions.jsonl", 3, rows, PREDICTION_FIELDS)
    assert not (out / "predictions.jsonl").exists()


def test_a_merge_refuses_a_shard_that_lost_or_repeated_a_row(shard_files):
    out, rows = shard_files
    path = shard_file(out, 1, 2)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[1:]), encoding="utf-8")
    lost = json.loads(lines[0])["id"]
    with pytest.raises(ShardError, match=f"1 of shard 1/2's rows are missing \\(first: id '{lost}'\\); rerun --shard 1/2"):
        merge_shards(out, "predictions.jsonl", 2, rows, PREDICTION_FIELDS)
    path.write_text("".join(lines + lines[:1]), encoding="utf-8")
    with pytest.raises(ShardError, match=f"shard 1/2: .*:{len(lines) + 1}: field 'id': duplicate id '{lost}'"):
        merge_shards(out, "predictions.jsonl", 2, rows, PREDICTION_FIELDS)
    path.write_text("".join(lines) + lines[0][:15], encoding="utf-8")
    with pytest.raises(ShardError, match=r"not valid JSON.*rerunning --shard 1/2 drops a half-written last line"):
        merge_shards(out, "predictions.jsonl", 2, rows, PREDICTION_FIELDS)
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ShardError, match=f"row id '{rows[-1]['id']}' is not in the input; the input or --limit changed"):
        merge_shards(out, "predictions.jsonl", 2, rows[:-1], PREDICTION_FIELDS)
    (out / "predictions.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ShardError, match="exists and is not the merge of the 2 shards; move it away"):
        merge_shards(out, "predictions.jsonl", 2, rows, PREDICTION_FIELDS)


# --- the backfill job ---------------------------------------------------------------------------------


def test_backfill_shards_merge_into_the_single_process_output(tiny_model, tmp_path, capsys):
    legacy = FIXTURES_DIR / "raw" / "backfill_legacy.jsonl"
    model = tiny_model("qwen3_backfill")

    def backfill(out, *extra):
        argv = ["--model", str(model), "--input", str(legacy), "--out", str(out), "--max-new-tokens", "12",
                "--batch-size", "1", *extra]
        assert job.main(argv) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    backfill(tmp_path / "single")
    out = tmp_path / "sharded"
    for index in range(2):
        assert f"shard {index}/2: replies generated now:" in backfill(out, "--shard", f"{index}/2")
    assert not (out / "generations.jsonl").exists() and not (out / "backfilled.jsonl").exists()
    assert all(read_jsonl(shard_file(out, i, 2, "generations.jsonl")) for i in range(2))
    assert "replies generated now: 0, reused: 0, merged: 6" in backfill(out, "--merge-shards", "2")
    single = tmp_path / "single"
    assert by_id(out / "generations.jsonl") == by_id(single / "generations.jsonl")  # sampled with the same seed
    for name in ("backfilled.jsonl", "rejects.jsonl"):
        assert (out / name).read_text(encoding="utf-8") == (single / name).read_text(encoding="utf-8")


# --- the SPPO driver's generate stage -----------------------------------------------------------------


def test_sppo_generation_shards_merge_into_the_single_process_generations(tiny_model, tmp_path, monkeypatch,
                                                                          capsys):
    prompts = FIXTURES_DIR / "prepared" / "sppo_prompts_iter1.jsonl"

    def drive(out, *extra):
        argv = ["--out", str(out), "--prompts", str(prompts), "--start-model", str(tiny_model("gemma2")),
                "--ranker-model", stand_in_model(tmp_path, "ranker"), "--k", "2", "--max-new-tokens", "6", "--batch-size", "1",
                "--limit", "6", "--holdout", "1", "--cpu", *extra]
        return driver.main(argv)

    def stop(args, it):  # ranking and training are tested in test_sppo_driver.py
        raise driver.StageError("stopped after generating")

    monkeypatch.setattr(driver, "stage_rank", stop)
    assert drive(tmp_path / "single") == 2
    out = tmp_path / "sharded"
    for index in range(2):
        assert drive(out, "--shard", f"{index}/2") == 0
        assert f"iter 1: shard {index}/2 generated" in capsys.readouterr().out
    parts = [read_jsonl(shard_file(out / "iter_1", i, 2, "generations.jsonl")) for i in range(2)]
    assert all(parts) and sorted(r["id"] for part in parts for r in part) == ["1", "2", "3", "4", "5"]

    assert drive(out, "--merge-shards", "2") == 2
    assert "stopped after generating" in capsys.readouterr().err
    merged, single = out / "iter_1" / "generations.jsonl", tmp_path / "single" / "iter_1" / "generations.jsonl"
    assert merged.read_text(encoding="utf-8") == single.read_text(encoding="utf-8")
    # a shard run now has nothing to generate before iteration 1 is trained
    assert drive(out, "--shard", "0/2") == 2
    assert "iter 1: its generations are merged but it is not trained yet" in capsys.readouterr().err


def test_sppo_merge_refuses_a_shard_generated_with_other_settings(tiny_model, tmp_path, capsys):
    prompts = FIXTURES_DIR / "prepared" / "sppo_prompts_iter1.jsonl"
    argv = ["--out", str(tmp_path), "--prompts", str(prompts), "--start-model", str(tiny_model("gemma2")),
            "--ranker-model", stand_in_model(tmp_path, "ranker"), "--max-new-tokens", "2", "--batch-size", "1", "--limit", "4",
            "--holdout", "1", "--cpu"]
    assert driver.main([*argv, "--k", "2", "--shard", "0/2"]) == 0
    assert driver.main([*argv, "--k", "3", "--shard", "1/2"]) == 0
    assert driver.main([*argv, "--k", "2", "--merge-shards", "2"]) == 2
    assert "shard 1/2 was generated with other settings or inputs than this run's" in capsys.readouterr().err
