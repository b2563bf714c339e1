"""merge/quantize_4bit.py: a real bitsandbytes NF4 export (bitsandbytes 0.50 quantises on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from helpers import hub_card, run_script
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipekit.checkpoints import quantize
from recipekit.checkpoints.probes import PROBE_CONVERSATIONS, probe_logits, probe_texts
from recipekit.paths import REPO_ROOT
from recipekit.templates.chat_format import ConversationError, render

QUANTIZE_CLI = REPO_ROOT / "merge" / "quantize_4bit.py"


def run_cli(*args):
    return run_script(QUANTIZE_CLI, *args)


@pytest.fixture(scope="module")
def export(tiny_model, tmp_path_factory):
    source = tiny_model("gemma4")
    out = tmp_path_factory.mktemp("nf4") / "model-nf4"
    done = run_cli("--model", str(source), "--out", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return source, out, done


def test_export_reloads_as_the_nf4_quantisation_of_its_source(export, tmp_path):
    source, out, _ = export
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = probe_texts(tokenizer)
    reloaded = AutoModelForCausalLM.from_pretrained(out, device_map={"": "cpu"}).eval()
    linear4 = [m for m in reloaded.modules() if isinstance(m, bnb.nn.Linear4bit)]
    # 7 projections x 2 decoder layers, and the image embedder's patch and output projections
    assert len(linear4) == 16
    assert all(m.weight.quant_state.quant_type == "nf4" for m in linear4)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["bnb_4bit_quant_type"] == "nf4" and config["bnb_4bit_use_double_quant"] is True
    assert config["bnb_4bit_compute_dtype"] == "bfloat16"
    # Quantising the source in this process gives the very logits of the saved checkpoint.
    fresh = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=quantize.nf4_config(), device_map={"": "cpu"}
    ).eval()
    # The saved tensors are that quantisation, saved before any forward pass, bit for bit: this
    # holds whichever CPU 4-bit kernel bitsandbytes found (quantising does not use it).
    fresh.save_pretrained(tmp_path / "fresh", safe_serialization=True)
    saved, expected = load_file(out / "model.safetensors"), load_file(tmp_path / "fresh" / "model.safetensors")
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[key], expected[key]) for key in saved)
    for a, b in zip(probe_logits(reloaded, tokenizer, texts), probe_logits(fresh, tokenizer, texts)):
        assert torch.equal(a, b)
    assert (out / "chat_template.jinja").exists()
    assert (out / "processor_config.json").read_bytes() == (Path(source) / "processor_config.json").read_bytes()


def test_export_reports_size_and_drift(export):
    source, out, done = export
    summary = json.loads((out / "manifest.json").read_text())["quantize"]
    assert summary["weights_bytes_before"] == (Path(source) / "model.safetensors").stat().st_size
    assert summary["weights_bytes_after"] == (out / "model.safetensors").stat().st_size
    assert summary["weights_bytes_after"] < summary["weights_bytes_before"]
    drift = summary["drift"]["max_abs_logit_diff"]
    assert 0 < drift < float("inf")  # 4 bits really changed the weights, and nothing blew up
    assert summary["reload_max_abs_logit_diff"] <= quantize.RELOAD_TOLERANCE
    assert f"max {drift:.3e}" in done.stdout and "weights " in done.stdout


def test_export_carries_its_model_card(export):
    source, out, done = export
    summary = json.loads((out / "manifest.json").read_text())["quantize"]
    card = hub_card(out / "README.md", base_model=None, license=None, language=None, private=[out.parent, source])
    assert {"bitsandbytes", "nf4"} <= set(card.data.tags) and card.data.model_name == "model-nf4"
    assert f"- **bitsandbytes nf4 export** of `{Path(source).name}` → this checkpoint: weights {summary['weights_bytes_before']} → " \
           f"{summary['weights_bytes_after']} bytes, logit drift max {summary['drift']['max_abs_logit_diff']}" in card.text
    assert f"model card {out / 'README.md'}" in done.stdout


def test_push_to_hub_uploads_the_export_with_its_card(tiny_model, tmp_path, fake_hub):
    out = tmp_path / "nf4"
    assert quantize.main(["--model", str(tiny_model("gemma4")), "--out", str(out), "--device", "cpu",
                          "--push-to-hub", "someone/model-nf4"]) == 0
    assert [name for name, _ in fake_hub.calls] == ["whoami", "create_repo", "upload_folder"]
    assert fake_hub.calls[1][1] == {"repo_id": "someone/model-nf4", "private": False, "exist_ok": True}
    upload = fake_hub.calls[2][1]
    assert Path(upload["folder_path"]) == out and {"README.md", "manifest.json", "model.safetensors"} <= set(upload["files"])


def test_existing_out_is_refused(export):
    source, out, _ = export
    done = run_cli("--model", str(source), "--out", str(out), "--device", "cpu")
    assert done.returncode == 2 and "already exists" in done.stderr


def test_export_saves_the_weights_it_measured(tiny_model, tmp_path):
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer at its first forward and
    quantises its scales afresh when such a layer is saved: saving after the probes would
    write weights a few 1e-3 in the logits away from the measured ones (so for the tiny Qwen 3)."""
    out = tmp_path / "qwen3-nf4"
    assert quantize.main(["--model", str(tiny_model("qwen3")), "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "manifest.json").read_text())["quantize"]["reload_max_abs_logit_diff"] == 0.0


def test_max_drift_fails_without_output(tiny_model, tmp_path, capsys):
    out = tmp_path / "nf4"
    code = quantize.main(["--model", str(tiny_model("gemma4")), "--out", str(out), "--device", "cpu",
                          "--max-drift", "0"])
    assert code == 2 and "over --max-drift" in capsys.readouterr().err
    assert not out.exists()


def test_a_backend_that_cannot_quantise_names_the_reason(tiny_model, tmp_path, monkeypatch, capsys):
    """Where bitsandbytes has no backend for the device, the error says so and asks for CUDA."""
    real = quantize.load_model

    def no_backend(path, dtype, device, **kwargs):
        if "quantization_config" in kwargs:
            raise RuntimeError("no kernel for 4-bit quantisation on this device")
        return real(path, dtype, device, **kwargs)

    monkeypatch.setattr(quantize, "load_model", no_backend)
    out = tmp_path / "nf4"
    assert quantize.main(["--model", str(tiny_model("gemma4")), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no kernel for 4-bit quantisation" in err and "CUDA GPU" in err and bnb.__version__ in err
    assert not out.exists()


def test_a_template_without_a_system_role_gets_the_probes_system_text_in_the_first_user_turn(tiny_model, tmp_path):
    """Gemma 2's chat template (the SPPO recipe's family) refuses a system turn, which the first probe
    opens with: the probe puts that text at the head of its first user turn, and the export runs."""
    source = tiny_model("gemma2")
    tokenizer = AutoTokenizer.from_pretrained(source)
    with pytest.raises(ConversationError, match="Gemma 2 has no system role"):
        render(tokenizer, list(PROBE_CONVERSATIONS[0]))
    system, user, _ = PROBE_CONVERSATIONS[0]
    texts = probe_texts(tokenizer)
    assert texts[0].startswith(f"<bos><start_of_turn>user\n{system['content']}\n\n{user['content']}<end_of_turn>\n")
    assert texts[1:] == [render(tokenizer, list(turns)) for turns in PROBE_CONVERSATIONS[1:]]  # no system turn there

    out = tmp_path / "gemma2-nf4"
    assert quantize.main(["--model", str(source), "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "manifest.json").read_text())["quantize"]
    assert summary["linear_4bit_layers"] == 14  # 7 projections x 2 decoder layers
    assert summary["reload_max_abs_logit_diff"] <= quantize.RELOAD_TOLERANCE
