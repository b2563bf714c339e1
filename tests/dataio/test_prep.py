"""What each preprocessor writes, checked on the project's raw fixtures."""

from __future__ import annotations

import gc
import json
import os
import runpy
import subprocess
import sys
from collections import Counter
from datetime import date

import pytest
from transformers import AutoTokenizer

from recipekit.backfill import prep as backfill
from recipekit.chatbot import prep as bitext
from recipekit.dataio import prep_runner
from recipekit.dataio.prep_runner import Spool, Stats, stream_located
from recipekit.dataio.rows import FieldError, source_split
from recipekit.reward import prep as preference
from recipekit.sppo import prompts as sppo_prompts
from recipekit.supervisor import prep as supervisor
from recipekit.supervisor import prep_pairs as cs_pairs
from recipekit.templates.chat_format import to_messages
from recipekit.templates.lengths import token_length
from recipekit.templates.special_tokens import sentinel_pair
from recipekit.testing import FIXTURES_DIR

RAW = FIXTURES_DIR / "raw"
PREPARED = FIXTURES_DIR / "prepared"


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(module, *argv):
    assert module.main([str(a) for a in argv]) == 0


def test_prepared_fixtures_are_reproduced_byte_for_byte(tmp_path):
    script = FIXTURES_DIR / "make_prepared_fixtures.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert len(made) >= 12  # other fixtures may live next to them; these must all be there
    for name in made:
        assert (tmp_path / name).read_bytes() == (PREPARED / name).read_bytes(), name


def test_raw_fixtures_are_reproduced_byte_for_byte():
    files = runpy.run_path(str(FIXTURES_DIR / "make_raw_fixtures.py"))["files"]()
    for name, content in files.items():
        assert (RAW / name).read_text(encoding="utf-8") == content, name


def test_supervisor_rows_split_by_label_and_balance_train_only(tmp_path, capsys):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    source = RAW / "supervisor_judged.jsonl"
    _run(supervisor, "--input", source, "--output", train, "--split-test", 30, "--test-output", test, "--seed", 3)
    raw, kept, held = _read(source), _read(train), _read(test)
    assert len(kept) + len(held) == len(raw) and not {r["id"] for r in kept} & {r["id"] for r in held}
    share = Counter(r["label"] for r in raw)["correct"] / len(raw)
    assert abs(Counter(r["label"] for r in held)["correct"] - 30 * share) <= 1
    by_id = {r["id"]: r for r in raw}
    for row in kept + held:
        gold = by_id[row["id"]]
        system, user, assistant = row["conversations"]
        assert [t["from"] for t in row["conversations"]] == ["system", "user", "assistant"]
        assert system["value"] == supervisor.DEFAULT_SYSTEM
        assert user["value"] == f"[Category] {gold['category']}\n[Conversation Transcript] {gold['transcript']}\n" \
                                f"[Retrieved Document] {gold['document']}"
        verdict = supervisor.parse_judgement(assistant["value"])
        assert (verdict["label"], verdict["reason"], verdict["think"]) == (gold["label"], gold["reason"], gold["think"])
        assert row["label"] == gold["label"]
    # non-ASCII kept as is, as the card's rows are
    assert "고객" in train.read_text(encoding="utf-8")

    balanced = tmp_path / "balanced.jsonl"
    _run(supervisor, "--input", source, "--output", balanced, "--split-test", 30, "--test-output", tmp_path / "t2.jsonl",
         "--seed", 3, "--balance")
    counts = Counter(r["label"] for r in _read(balanced))
    assert counts["correct"] == counts["incorrect"] == Counter(r["label"] for r in kept)["incorrect"]
    assert (tmp_path / "t2.jsonl").read_bytes() == test.read_bytes()


def test_supervisor_test_counts_hold_out_exact_label_counts(tmp_path):
    source = RAW / "supervisor_judged.jsonl"  # 58 correct, 92 incorrect

    def split(name, *flags):
        train, test = tmp_path / f"{name}_train.jsonl", tmp_path / f"{name}_test.jsonl"
        _run(supervisor, "--input", source, "--output", train, "--test-output", test, *flags)
        return train, test

    train, test = split("a", "--test-counts", "correct=20,incorrect=10", "--seed", 3)
    assert Counter(r["label"] for r in _read(test)) == {"correct": 20, "incorrect": 10}
    assert Counter(r["label"] for r in _read(train)) == {"correct": 38, "incorrect": 82}
    assert {r["id"] for r in _read(train)} | {r["id"] for r in _read(test)} == {r["id"] for r in _read(source)}
    # seeded: the same seed draws the same rows, another seed other rows
    again = split("b", "--test-counts", "correct=20,incorrect=10", "--seed", 3)
    other = split("c", "--test-counts", "correct=20,incorrect=10", "--seed", 4)
    assert again[0].read_bytes() == train.read_bytes() and again[1].read_bytes() == test.read_bytes()
    assert other[1].read_bytes() != test.read_bytes()
    # the proportional split of 30 holds 12/18; asking for those counts draws the very same rows
    proportional = split("d", "--split-test", 30, "--seed", 3)
    exact = split("e", "--test-counts", "incorrect=18, correct=12", "--seed", 3)
    assert Counter(r["label"] for r in _read(proportional[1])) == {"correct": 12, "incorrect": 18}
    assert exact[1].read_bytes() == proportional[1].read_bytes()


def test_supervisor_test_counts_beyond_the_data_is_an_error(tmp_path, capsys):
    code = supervisor.main(["--input", str(RAW / "supervisor_judged.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                            "--test-output", str(tmp_path / "t.jsonl"), "--test-counts", "correct=59,incorrect=10"])
    assert code == 2
    assert "--test-counts asks for 59 'correct' rows but the data has 58" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("value, words", [
    ("correct=5,maybe=3", "unknown class 'maybe' (classes: correct, incorrect)"),
    ("correct:5", "'correct:5' is not CLASS=COUNT"),
    ("correct=-1", "'correct=-1' is not CLASS=COUNT"),
    ("correct=1,correct=2", "class 'correct' is given twice"),
    ("correct=0", "every count is 0; nothing to hold out"),
])
def test_supervisor_malformed_test_counts_name_the_flag(value, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        supervisor.main(["--input", str(RAW / "supervisor_judged.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                         "--test-output", str(tmp_path / "t.jsonl"), "--test-counts", value])
    assert exit_info.value.code == 2
    assert f"--test-counts: {words}" in capsys.readouterr().err


def test_supervisor_default_prompt_is_the_cards_in_training_and_scoring(tmp_path, tiny_model):
    from recipekit.supervisor.scoring import read_test_rows
    from recipekit.templates.chat_format import inference_prompt, render

    card_system = "당신은 전자제품 CS 챗봇의 품질을 평가하는 수퍼바이저입니다."
    out = tmp_path / "rows.jsonl"
    _run(supervisor, "--input", RAW / "supervisor_judged.jsonl", "--output", out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("gemma4"))
    row = read_test_rows(out)[0]
    for text in (render(tokenizer, row["messages"]), inference_prompt(tokenizer, row["messages"])):
        assert text.startswith(f"<bos><|turn>system\n{card_system}<turn|>\n<|turn>user\n[Category] ")
    assert inference_prompt(tokenizer, row["messages"]).endswith("<turn|>\n<|turn>model\n")
    # the prepared fixtures the demo and the scorer tests read carry it too
    for name in ("supervisor_stage2_train.jsonl", "supervisor_stage2_test.jsonl"):
        assert {r["conversations"][0]["value"] for r in _read(PREPARED / name)} == {card_system}


def test_supervisor_passes_conversation_rows_through(tmp_path):
    source = tmp_path / "in.jsonl"
    rows = _read(PREPARED / "supervisor_stage2_test.jsonl")[:3]
    source.write_text("".join(json.dumps({"conversations": r["conversations"]}, ensure_ascii=False) + "\n" for r in rows))
    _run(supervisor, "--input", source, "--output", tmp_path / "out.jsonl")
    out = _read(tmp_path / "out.jsonl")
    assert [(r["label"], r["conversations"]) for r in out] == [(r["label"], r["conversations"]) for r in rows]


def test_supervisor_clips_user_text_never_the_judgement(tmp_path, tiny_model, capsys):
    path = tiny_model("gemma4")
    tokenizer = AutoTokenizer.from_pretrained(path)
    full, clipped = tmp_path / "full.jsonl", tmp_path / "clipped.jsonl"
    _run(supervisor, "--input", RAW / "supervisor_judged.jsonl", "--output", full)
    capsys.readouterr()
    _run(supervisor, "--input", RAW / "supervisor_judged.jsonl", "--output", clipped, "--tokenizer", path,
         "--max-tokens", 180)
    summary = capsys.readouterr().out
    changed = 0
    for before, after in zip(_read(full), _read(clipped)):
        assert token_length(tokenizer, to_messages(after["conversations"])) <= 180
        assert after["conversations"][2] == before["conversations"][2]
        assert before["conversations"][1]["value"].startswith(after["conversations"][1]["value"])
        changed += after != before
    assert changed > 0 and f"clipped: {changed}" in summary and "tokens: p50" in summary


def test_spool_reads_records_back_in_any_order_between_appends():
    spool = Spool()
    spool.extend({"n": n, "text": "행" * n} for n in range(5))
    assert [r["n"] for r in spool.take([3, 0, 4, 3])] == [3, 0, 4, 3]
    spool.append({"n": 5, "when": date(2026, 1, 2)})  # after a read, appends still go to the end
    assert [r["n"] for r in spool] == [0, 1, 2, 3, 4, 5] == [r["n"] for r in spool] and len(spool) == 6
    assert next(spool.take([5]))["when"] == date(2026, 1, 2)


# A template that writes the user text verbatim, followed by one mark per 50 of its characters: a
# splice of the full rendering miscounts every shorter cut, so the clipper must notice and render for real.
_LENGTH_DEPENDENT_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}"
    "{% if m.role == 'user' %}{{ ' |' * ((m.content | trim | length) // 50) }}{% endif %}</{{ m.role }}>{% endfor %}"
)


@pytest.mark.parametrize("template", ["gemma4", "length-dependent"])
def test_supervisor_clip_batch_cuts_where_one_more_character_would_not_fit(tiny_model, template):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("gemma4"))
    if template == "length-dependent":
        tokenizer.chat_template = _LENGTH_DEPENDENT_TEMPLATE
    rows = [json.loads(line) for line in (RAW / "supervisor_judged.jsonl").read_text(encoding="utf-8").splitlines()]
    records = [supervisor._from_fields(row, supervisor.DEFAULT_SYSTEM) for row in rows]
    originals = [r["conversations"][1]["value"] for r in records]
    limit = sorted(token_length(tokenizer, to_messages(r["conversations"])) for r in records)[len(records) // 2]
    results = supervisor.clip_batch(records, tokenizer, limit)
    assert any(cut for _, _, cut in results) and not all(cut for _, _, cut in results)
    for (record, length, cut), full in zip(results, originals):
        user = record["conversations"][1]["value"]
        assert length == token_length(tokenizer, to_messages(record["conversations"])) <= limit
        assert cut == (user != full) and full.startswith(user)
        if cut:  # the longest cut: one more character of the user text no longer fits
            longer = [*record["conversations"][:1], {"from": "user", "value": full[:len(user) + 1]},
                      *record["conversations"][2:]]
            assert token_length(tokenizer, to_messages(longer)) > limit
    assert all(not cut for _, _, cut in supervisor.clip_batch(records[:3], tokenizer, 100_000))


def _tag_with_pid(records):
    """A finalize step: each record with the process that finalized it; every seventh one refused."""
    return [FieldError("n", "refused") if r["n"] % 7 == 3 else {**r, "pid": os.getpid()} for r in records]


def test_finalize_in_worker_processes_keeps_the_input_order_and_the_rejects_lines(tmp_path, monkeypatch):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(60)), encoding="utf-8")
    chunked = prep_runner.chunks
    monkeypatch.setattr(prep_runner, "chunks", lambda items: chunked(items, 4))  # 15 chunks, several in flight

    def run(workers):
        stats = Stats()
        kept = list(stream_located([str(source)], dict, stats, True, finalize=_tag_with_pid, workers=workers))
        return kept, [(r["line"], r["field"], r["reason"]) for r in stats.rejects]

    here, here_rejects = run(0)
    pooled, pooled_rejects = run(2)
    assert [(line, r["n"]) for _, line, r in pooled] == [(line, r["n"]) for _, line, r in here]
    assert [r["n"] for _, _, r in here] == [n for n in range(60) if n % 7 != 3]
    assert pooled_rejects == here_rejects == [(n + 1, "n", "refused") for n in range(60) if n % 7 == 3]
    assert {r["pid"] for _, _, r in here} == {os.getpid()}
    pids = {r["pid"] for _, _, r in pooled}  # which of the two takes a chunk is the scheduler's choice
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


def test_the_pool_undoes_only_its_own_gc_freeze(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(10)), encoding="utf-8")

    def run():
        list(stream_located([str(source)], dict, Stats(), True, finalize=_tag_with_pid, workers=1))

    gc.freeze()  # as tests/conftest.py does: the caller's own freeze stays
    frozen = gc.get_freeze_count()
    run()
    assert gc.get_freeze_count() > frozen // 2 > 0  # less only what was freed meanwhile; unfrozen it is 0
    gc.unfreeze()
    try:
        run()
        assert gc.get_freeze_count() == 0
    finally:
        gc.freeze()


def test_supervisor_clipping_in_worker_processes_writes_the_same_files(tmp_path, tiny_model, capsys):
    outputs = {}
    for workers in ("0", "2"):
        out, held = tmp_path / f"train-{workers}.jsonl", tmp_path / f"test-{workers}.jsonl"
        _run(supervisor, "--input", RAW / "supervisor_judged.jsonl", "--output", out, "--tokenizer", tiny_model("gemma4"),
             "--max-tokens", 180, "--split-test", 2, "--test-output", held, "--workers", workers)
        summary = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("rows out")]  # names files
        outputs[workers] = out.read_bytes(), held.read_bytes(), summary
    assert outputs["0"] == outputs["2"] and "clipped: 150" in outputs["0"][2]


def test_supervisor_rejects_a_row_that_cannot_fit(tmp_path, tiny_model, capsys):
    code = supervisor.main(["--input", str(RAW / "supervisor_judged.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                            "--tokenizer", str(tiny_model("gemma4")), "--max-tokens", "40"])
    assert code == 2 and "alone exceed --max-tokens 40" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_cs_pairs_drop_and_count_exact_duplicates(tmp_path, capsys):
    _run(cs_pairs, "--input", RAW / "cs_pairs.jsonl", "--output", tmp_path / "o.jsonl", "--system", "Be brief.")
    raw, out = _read(RAW / "cs_pairs.jsonl"), _read(tmp_path / "o.jsonl")
    unique = list(dict.fromkeys((r["question"], r["answer"]) for r in raw))
    assert [(r["conversations"][1]["value"], r["conversations"][2]["value"]) for r in out] == unique
    assert all(r["conversations"][0] == {"from": "system", "value": "Be brief."} for r in out)
    assert f"duplicates: {len(raw) - len(unique)}" in capsys.readouterr().out and len(raw) > len(unique)


def test_bitext_keeps_metadata_and_splits_by_intent(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    _run(bitext, "--input", RAW / "bitext.csv", "--output", train, "--split-test", 12, "--test-output", test)
    held = _read(test)
    assert Counter(r["intent"] for r in held) == {intent: 2 for intent in {r["intent"] for r in _read(train)}}
    row = next(r for r in held + _read(train) if r["intent"] == "payment_issue")
    assert row["category"] == "PAYMENT" and row["flags"]
    assert [t["from"] for t in row["conversations"]] == ["user", "assistant"]
    assert "\n" in row["conversations"][1]["value"]  # a quoted multi-line CSV cell survives


def test_backfill_layout_and_inference_mode(tmp_path):
    _run(backfill, "--input", RAW / "backfill_traces.jsonl", "--output", tmp_path / "t.jsonl")
    raw = _read(RAW / "backfill_traces.jsonl")[0]
    system, user, assistant = _read(tmp_path / "t.jsonl")[0]["conversations"]
    (i0, i1), (s0, s1), (t0, t1) = (sentinel_pair(k) for k in ("instruction", "solution", "thinking"))
    assert user["value"] == f"{i0}\n{raw['instruction']}\n{i1}\n{s0}\n{raw['solution']}\n{s1}"
    assert assistant == {"from": "assistant", "value": f"{t0}\n{raw['thinking']}\n{t1}"}
    _run(backfill, "--mode", "inference", "--input", RAW / "backfill_traces.jsonl", "--output", tmp_path / "i.jsonl")
    prompt = _read(tmp_path / "i.jsonl")[0]
    assert [t["from"] for t in prompt["conversations"]] == ["system", "user"]
    assert prompt["conversations"][1] == user and prompt["solution"] == raw["solution"]


def test_preference_pairs_ties_multi_turn_and_language(tmp_path, capsys):
    out = tmp_path / "eval.jsonl"
    _run(preference, "--format", "eval", "--language", "japanese", "--input", RAW / "helpsteer3_ja.jsonl", "--output", out)
    summary = capsys.readouterr().out
    raw = _read(RAW / "helpsteer3_ja.jsonl")
    expected = []
    for r in raw:
        if r["language"] != "japanese" or len(r["context"]) > 1 or r["overall_preference"] == 0:
            continue
        better = r["response1"] if r["overall_preference"] < 0 else r["response2"]
        worse = r["response2"] if r["overall_preference"] < 0 else r["response1"]
        expected.append({"prompt": r["context"][0]["content"], "chosen": better, "rejected": worse, "dataset": "helpsteer3",
                         "split": "helpsteer3_ja"})  # a local file's split is its name
    assert _read(out) == expected
    drops = {"tie": sum(r["overall_preference"] == 0 and r["language"] == "japanese" and len(r["context"]) == 1 for r in raw),
             "language is not japanese": sum(r["language"] != "japanese" for r in raw)}
    for reason, count in drops.items():
        assert count and f"dropped ({reason}): {count}" in summary

    bt = tmp_path / "bt.jsonl"
    _run(preference, "--input", RAW / "arena_ja.jsonl", "--output", bt, "--system", "評価")
    arena = [r for r in _read(RAW / "arena_ja.jsonl") if r["turn"] == 1 and r["winner"] in ("model_a", "model_b")]
    rows = _read(bt)
    assert len(rows) == len(arena)
    for row, r in zip(rows, arena):
        win, lose = ("conversation_a", "conversation_b")[:: 1 if r["winner"] == "model_a" else -1]
        assert row == {"system": "評価", "input": r["conversation_a"][0]["content"],
                       "chosen": r[win][1]["content"], "rejected": r[lose][1]["content"]}


def test_sppo_prompts_parts_are_disjoint_and_deduplicated(tmp_path, capsys):
    _run(sppo_prompts, "--input", RAW / "ultrafeedback_prompts.jsonl", "--output", tmp_path / "p.jsonl", "--parts", 3,
         "--max-prompt-tokens", 0)
    parts = [[r["prompt"] for r in _read(tmp_path / f"p_iter{i}.jsonl")] for i in (1, 2, 3)]
    everything = [p for part in parts for p in part]
    unique = {r["instruction"] for r in _read(RAW / "ultrafeedback_prompts.jsonl")}
    assert len(everything) == len(set(everything)) and set(everything) == unique
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert f"duplicates: {45 - len(unique)}" in capsys.readouterr().out


def test_sppo_prompts_over_the_cards_512_tokens_are_left_out_counted_and_rejected(tmp_path, tiny_model,
                                                                                    gemma2_prompt, capsys):
    policy = tiny_model("gemma2")
    at_limit, over, far_over = gemma2_prompt(512), gemma2_prompt(513), gemma2_prompt(600)
    source = tmp_path / "prompts.jsonl"
    prompts = ["Write a poem.", at_limit, over, "Name a colour.", far_over]
    source.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts), encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    _run(sppo_prompts, "--input", source, "--output", tmp_path / "p.jsonl", "--parts", 1,
         "--tokenizer", policy, "--rejects", rejects)  # the default limit is the card's 512
    kept = {r["prompt"] for r in _read(tmp_path / "p_iter1.jsonl")}
    assert kept == {"Write a poem.", at_limit, "Name a colour."}
    assert "dropped (prompt over 512 tokens): 2" in capsys.readouterr().out
    assert _read(rejects) == [
        {"file": str(source), "line": line, "field": "instruction", "row": {"instruction": prompt},
         "reason": f"{n} tokens as the policy's chat prompt, over the limit of 512"}
        for line, prompt, n in ((3, over, 513), (5, far_over, 600))]


def test_sppo_prompt_limit_without_a_tokenizer_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        sppo_prompts.main(["--input", str(RAW / "ultrafeedback_prompts.jsonl"), "--output", str(tmp_path / "p.jsonl")])
    assert stop.value.code == 2
    assert "--max-prompt-tokens 512 counts tokens with the policy's tokenizer: pass --tokenizer" in capsys.readouterr().err
    missing = tmp_path / "no-such-tokenizer"
    assert sppo_prompts.main(["--input", str(RAW / "ultrafeedback_prompts.jsonl"), "--output", str(tmp_path / "p.jsonl"),
                              "--tokenizer", str(missing)]) == 2
    assert f"error: --tokenizer {missing}: no such directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_pairs_keep_the_split_they_came_from(tmp_path):
    helpsteer = next(r for r in _read(RAW / "helpsteer3_ja.jsonl") if r["language"] == "japanese"
                     and len(r["context"]) == 1 and r["overall_preference"])
    (tmp_path / "parts").mkdir()
    for split in ("train", "validation"):
        (tmp_path / "parts" / f"{split}.jsonl").write_text(json.dumps(helpsteer) + "\n", encoding="utf-8")
    plain = tmp_path / "mine.jsonl"
    plain.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "split": "dev"}) + "\n"
                     + json.dumps({"prompt": "q", "chosen": "c", "rejected": "r"}) + "\n", encoding="utf-8")
    out = tmp_path / "eval.jsonl"
    _run(preference, "--format", "eval", "--input", tmp_path / "parts" / "train.jsonl",
         "--input", tmp_path / "parts" / "validation.jsonl", "--input", plain, "--output", out)
    assert [(r["dataset"], r["split"]) for r in _read(out)] == [
        ("helpsteer3", "train"), ("helpsteer3", "validation"), ("plain", "dev"), ("plain", "mine")]
    assert source_split("nvidia/HelpSteer3:validation") == "validation" and source_split("nvidia/HelpSteer3") == "train"


@pytest.mark.parametrize("flags", [["--split-test", "5"], ["--test-counts", "correct=5"], ["--test-output", "t.jsonl"],
                                   ["--split-test", "5", "--test-counts", "correct=5", "--test-output", "t.jsonl"]])
def test_split_flags_go_together(flags, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        supervisor.main(["--input", str(RAW / "supervisor_judged.jsonl"), "--output", str(tmp_path / "o.jsonl"), *flags])
    assert exit_info.value.code == 2


def test_parquet_input_reads_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _read(RAW / "cs_pairs.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    _run(cs_pairs, "--input", RAW / "cs_pairs.jsonl", "--output", tmp_path / "from_jsonl.jsonl")
    _run(cs_pairs, "--input", tmp_path / "pairs.parquet", "--output", tmp_path / "from_parquet.jsonl")
    assert (tmp_path / "from_parquet.jsonl").read_bytes() == (tmp_path / "from_jsonl.jsonl").read_bytes()
