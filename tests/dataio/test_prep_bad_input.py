"""Every preprocessor stops on a malformed row with file, line and field, and writes nothing.

With --skip-invalid the run goes on and --rejects receives each bad row with its reason;
empty input is an error, never an empty output.
"""

from __future__ import annotations

import csv
import json

import pytest
from helpers import write_jsonl

from recipekit.backfill import prep as backfill
from recipekit.chatbot import prep as bitext
from recipekit.reward import prep as preference
from recipekit.sppo import prompts as sppo_prompts
from recipekit.supervisor import prep as supervisor
from recipekit.supervisor import prep_pairs as cs_pairs
from recipekit.testing import FIXTURES_DIR

RAW = FIXTURES_DIR / "raw"

SUPERVISOR = {"id": "x1", "category": "TV", "transcript": "고객: 보증?\n챗봇: 2년입니다.", "document": "TV 패널 보증: 2년.",
              "label": "correct", "reason": "일치합니다.", "think": "[a] 가\n[b] 나\n[c] 다"}
HELPSTEER = {"context": [{"role": "user", "content": "質問です。"}], "response1": "はい。", "response2": "いいえ。",
             "overall_preference": -2, "language": "japanese"}
# preprocessor, a valid row, [(broken field, broken value, words the message must contain)]
CASES = {
    "supervisor": (supervisor, SUPERVISOR, [("label", "maybe", "unknown value"), ("transcript", 7, "must be a string"),
                                            ("reason", "  ", "is empty"), ("document", None, "missing")]),
    "cs_pairs": (cs_pairs, {"question": "Q?", "answer": "A."}, [("answer", None, "missing"), ("question", ["Q"], "must be a string")]),
    "bitext": (bitext, {"flags": "B", "instruction": "help", "category": "ORDER", "intent": "track_order", "response": "ok"},
               [("intent", None, "missing"), ("response", "", "is empty")]),
    "backfill": (backfill, {"instruction": "Add 1 and 2.", "solution": "3", "thinking": "1 + 2 = 3."},
                 [("thinking", None, "missing"), ("solution", 3, "must be a string"),
                  ("instruction", "<|solution_end|> hi", "sentinel")]),
    "preference": (preference, HELPSTEER, [("overall_preference", 5, "outside -3..3"),
                                           ("overall_preference", "much", "must be an integer"),
                                           ("response2", None, "missing")]),
    "sppo_prompts": (sppo_prompts, {"instruction": "Write a poem."}, [("instruction", {"text": 1}, "must be a string")]),
}
BROKEN = [(name, field, value, words) for name, (_, _, breaks) in CASES.items() for field, value, words in breaks]


# what a preprocessor needs besides --input and --output when no tokenizer is given
REQUIRED = {sppo_prompts: ["--max-prompt-tokens", "0"]}


def _run(module, input_path, output, *extra):
    return module.main(["--input", str(input_path), "--output", str(output), *REQUIRED.get(module, []), *extra])


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.glob("out*"))


@pytest.mark.parametrize("name,field,value,words", BROKEN)
def test_bad_field_stops_with_file_line_and_field(name, field, value, words, tmp_path, capsys):
    module, good, _ = CASES[name]
    broken = {k: v for k, v in good.items() if k != field}
    if value is not None:
        broken[field] = value
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(good)] * 3 + [json.dumps(broken, ensure_ascii=False)])
    assert _run(module, source, tmp_path / "out.jsonl") == 2
    message = capsys.readouterr().err
    assert f"{source}:4:" in message and repr(field) in message and words in message
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_json_names_its_line(name, tmp_path, capsys):
    module, good, _ = CASES[name]
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(good)] * 4 + ['{"broken": ', json.dumps(good)])
    assert _run(module, source, tmp_path / "out.jsonl") == 2
    message = capsys.readouterr().err
    assert f"{source}:5:" in message and "'<json>'" in message and "not valid JSON" in message
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_input_is_an_error(name, tmp_path, capsys):
    module, _, _ = CASES[name]
    source = write_jsonl(tmp_path / "in.jsonl", ["", "  "])
    assert _run(module, source, tmp_path / "out.jsonl") == 2
    assert "no rows" in capsys.readouterr().err
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_non_object_row_is_rejected(name, tmp_path, capsys):
    module, good, _ = CASES[name]
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(good), "[1, 2]"])
    assert _run(module, source, tmp_path / "out.jsonl") == 2
    assert f"{source}:2: field '<row>'" in capsys.readouterr().err


def test_skip_invalid_writes_rejects_with_reasons(tmp_path, capsys):
    source = RAW / "supervisor_judged_bad.jsonl"
    output, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    assert _run(supervisor, source, output, "--skip-invalid", "--rejects", str(rejects)) == 0
    kept = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(kept) == 2
    found = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["field"]) for r in found] == [(2, "<json>"), (3, "document"), (4, "label"),
                                                        (5, "reason"), (6, "transcript")]
    assert all(r["file"] == str(source) and r["reason"] for r in found)
    assert found[0]["row"].startswith('{"id": "broken"')
    summary = capsys.readouterr().out
    assert "rows in: 7" in summary and "rows out: 2" in summary and "rejected: 5" in summary


def test_all_rows_invalid_is_an_error_even_when_skipping(tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"question": ""}'] * 2)
    assert _run(cs_pairs, source, tmp_path / "out.jsonl", "--skip-invalid") == 2
    assert "no usable rows: 2 rejected" in capsys.readouterr().err
    assert _outputs(tmp_path) == []


def test_csv_errors_name_the_physical_line(tmp_path, capsys):
    rows = list(csv.reader((RAW / "bitext.csv").read_text(encoding="utf-8").splitlines(keepends=True)))
    source = tmp_path / "in.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(rows[0])
        writer.writerow(["B", "two-line\ninstruction", "ORDER", "track_order", "ok"])  # lines 2-3
        writer.writerow(["B", "no intent", "ORDER", "", "ok"])  # line 4
    assert _run(bitext, source, tmp_path / "out.jsonl") == 2
    assert f"{source}:4: field 'intent': is empty" in capsys.readouterr().err


def test_missing_input_file_is_an_error(tmp_path, capsys):
    assert _run(cs_pairs, tmp_path / "absent.jsonl", tmp_path / "out.jsonl") == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_hub_dataset_is_a_clear_error(tmp_path, capsys):
    assert _run(cs_pairs, "no-such-owner/no-such-dataset", tmp_path / "out.jsonl") == 2
    assert "no-such-owner/no-such-dataset: no such local file" in capsys.readouterr().err
    assert _outputs(tmp_path) == []


def test_a_system_prompt_that_the_tokenizers_template_refuses_is_one_error_line(tiny_model, tmp_path, capsys):
    """Gemma 2's template has no system role: counting tokens with it, --system stops the run."""
    out = tmp_path / "out.jsonl"
    assert bitext.main(["--input", str(RAW / "bitext.csv"), "--output", str(out),
                        "--tokenizer", str(tiny_model("gemma2")), "--system", "Be brief."]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (building the tiny model logs too)
    assert len(errors) == 1 and errors[0].endswith("refuses the conversation: Gemma 2 has no system role")
    assert not out.exists()
