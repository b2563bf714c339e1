"""merge/merge_lora.py against PEFT itself: chains, added tokens, an adapter Axolotl trained, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from helpers import hub_card, run_script
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTuner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoProcessor, AutoTokenizer

from recipekit.checkpoints.merge import main as merge_main
from recipekit.checkpoints.probes import probe_logits, probe_texts
from recipekit.checkpoints.quantize import main as quantize_main
from recipekit.paths import RECIPES_DIR, REPO_ROOT
from recipekit.testing.smoke import SMOKE_STEPS
from recipekit.training.recipe_config import load_recipe, read_header

MERGE_CLI = REPO_ROOT / "merge" / "merge_lora.py"
ATOL = 1e-4  # float32 merge of tiny models: PEFT's unmerged forward vs merged weights


def run_cli(*args):
    return run_script(MERGE_CLI, *args)


def make_lora(base: Path, out: Path, seed: int, tokenizer=None, **lora_kwargs) -> Path:
    """A LoRA with random (non-zero) lora_B, so merging it changes the model."""
    torch.manual_seed(seed)
    cls = AutoModelForSequenceClassification if lora_kwargs.get("task_type") == "SEQ_CLS" else AutoModelForCausalLM
    model = cls.from_pretrained(base, dtype=torch.float32)
    if tokenizer is not None:
        model.resize_token_embeddings(len(tokenizer))
    lora_kwargs.setdefault("target_modules", "all-linear")
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora_kwargs)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # full copies (embeddings, heads, scores) start equal to the base: move them
        for name, param in peft_model.named_parameters():
            if param.requires_grad and "lora_" not in name:
                param.add_(torch.randn_like(param) * 0.1)
    peft_model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def peft_logits(base: Path, adapters: list[Path], texts: list[str], tokenizer, vocab: int | None = None):
    """Reference: the base with every adapter loaded unmerged and active at once."""
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if vocab is not None:
        model.resize_token_embeddings(vocab)
    stacked = PeftModel.from_pretrained(model, str(adapters[0]), adapter_name="a0")
    for index, adapter in enumerate(adapters[1:], start=1):
        stacked.load_adapter(str(adapter), adapter_name=f"a{index}")
    stacked.base_model.set_adapter([f"a{i}" for i in range(len(adapters))])
    return probe_logits(stacked.eval(), tokenizer, texts)


def model_logits(path: Path, texts: list[str], tokenizer):
    return probe_logits(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), tokenizer, texts)


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_weights(base: Path, merged: Path) -> set[str]:
    """Names of the tensors that differ in any bit between two float32 checkpoints."""
    before, after = load_file(base / "model.safetensors"), load_file(merged / "model.safetensors")
    assert before.keys() == after.keys()
    return {name for name in before if not torch.equal(before[name], after[name])}


PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def gemma4(tiny_model) -> Path:
    return tiny_model("gemma4")


@pytest.fixture(scope="module")
def chain(gemma4, tmp_path_factory):
    """Two LoRA stages merged by the CLI in a subprocess, in float32."""
    root = tmp_path_factory.mktemp("chain")
    a1 = make_lora(gemma4, root / "stage1", seed=1)
    a2 = make_lora(gemma4, root / "stage2", seed=2)
    out = root / "merged"
    done = run_cli("--base", str(gemma4), "--adapter", str(a1), "--adapter", str(a2), "--out", str(out),
                   "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    return {"root": root, "a1": a1, "a2": a2, "out": out, "proc": done}


def test_chain_equals_both_adapters_applied_with_peft(chain, gemma4):
    tokenizer = AutoTokenizer.from_pretrained(gemma4)
    texts = probe_texts(tokenizer)
    merged = model_logits(chain["out"], texts, tokenizer)
    reference = peft_logits(gemma4, [chain["a1"], chain["a2"]], texts, tokenizer)
    stage1_only = peft_logits(gemma4, [chain["a1"]], texts, tokenizer)
    base = model_logits(gemma4, texts, tokenizer)
    assert max_diff(merged, reference) < ATOL
    # Both stages change the function, so a dropped stage could not pass the check above.
    assert max_diff(merged, stage1_only) > 100 * ATOL
    assert max_diff(merged, base) > 100 * ATOL


def test_chain_saves_template_eos_and_manifest(chain, gemma4):
    out = chain["out"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (out / "chat_template.jinja").read_text() == (Path(gemma4) / "chat_template.jinja").read_text()
    eos = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<turn|>") in eos and tokenizer.eos_token_id in eos
    assert list(out.glob("*.safetensors"))

    manifest = json.loads((out / "manifest.json").read_text())
    merge = manifest["merge"]
    assert [a["path"] for a in merge["adapters"]] == [str(chain["a1"]), str(chain["a2"])]
    assert merge["reference"].startswith("stacked-unmerged")
    assert merge["max_abs_logit_diff"] <= merge["tolerance"]
    assert merge["dtype"] == "float32"
    weights = str(chain["a2"] / "adapter_model.safetensors")
    assert manifest["inputs"][weights] == sha(chain["a2"] / "adapter_model.safetensors")
    assert f"max |logit diff| {merge['max_abs_logit_diff']:.3e}" in chain["proc"].stdout


def test_merged_checkpoint_carries_its_model_card(chain, gemma4):
    """PEFT-made adapters name no recipe, so nothing says what the tiny base stands in for: the card leaves
    base_model, licence and language out and says why."""
    out = chain["out"]
    card = hub_card(out / "README.md", base_model=None, license=None, language=None, private=[chain["root"], gemma4])
    assert card.data.model_name == "merged" and card.data.pipeline_tag == "text-generation"
    merge = json.loads((out / "manifest.json").read_text())["merge"]
    assert (f"| Base model | not named in the metadata: the first run's base model `{gemma4.name}` is a stand-in (a "
            "random-init tiny gemma4 model, built locally by recipekit.testing.tiny_models), and no training run's "
            "recipe names the model it stands for |") in card.text
    assert f"max abs logit difference {merge['max_abs_logit_diff']} (tolerance {merge['tolerance']})" in card.text
    assert "adapters `../stage1`, `../stage2`" in card.text  # relative to the card's directory
    assert "No training run's manifest was found" in card.text  # PEFT-made adapters, no training manifest
    assert f"model card {out / 'README.md'}" in chain["proc"].stdout


def merge_one(gemma4: Path, adapter: Path, out: Path, *extra: str) -> int:
    return merge_main(["--base", str(gemma4), "--adapter", str(adapter), "--out", str(out), "--dtype", "float32",
                       *extra])


def test_push_to_hub_uploads_the_verified_checkpoint_with_its_card(chain, gemma4, tmp_path, fake_hub):
    assert merge_one(gemma4, chain["a1"], tmp_path / "quiet") == 0
    assert fake_hub.calls == []  # off by default
    out = tmp_path / "merged"
    assert merge_one(gemma4, chain["a1"], out, "--push-to-hub", "someone/supervisor", "--private") == 0
    assert [name for name, _ in fake_hub.calls] == ["whoami", "create_repo", "upload_folder"]
    create, upload = fake_hub.calls[1][1], fake_hub.calls[2][1]
    assert create == {"repo_id": "someone/supervisor", "private": True, "exist_ok": True}
    assert upload["repo_id"] == "someone/supervisor" and Path(upload["folder_path"]) == out
    assert {"README.md", "manifest.json", "model.safetensors", "config.json"} <= set(upload["files"])
    assert ModelCard.load(out / "README.md").data.model_name == "someone/supervisor"


def test_push_without_login_stops_before_merging(chain, gemma4, tmp_path, fake_hub, capsys):
    fake_hub.fail["whoami"] = LocalTokenNotFoundError(
        "Token is required to call the /whoami-v2 endpoint, but no token found.\nSee the docs.")
    out = tmp_path / "merged"
    assert merge_one(gemma4, chain["a1"], out, "--push-to-hub", "someone/supervisor") == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: cannot push to someone/supervisor: Token is required to call the /whoami-v2 endpoint, "
                   "but no token found. (log in with `hf auth login` or set HF_TOKEN)")
    assert not out.exists() and [name for name, _ in fake_hub.calls] == ["whoami"]


def test_refused_upload_is_one_line_and_keeps_the_checkpoint(chain, gemma4, tmp_path, fake_hub, capsys):
    response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
    fake_hub.fail["create_repo"] = HfHubHTTPError("401 Client Error: Unauthorized for url: "
                                                  "https://huggingface.co/api/repos/create\n\nInvalid credentials",
                                                  response=response)
    out = tmp_path / "merged"
    assert merge_one(gemma4, chain["a1"], out, "--push-to-hub", "someone/supervisor") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars, one line
    assert last == (f"error: pushing {out} to someone/supervisor failed: 401 Client Error: Unauthorized for url: "
                    f"https://huggingface.co/api/repos/create; the checkpoint is still in {out} "
                    "(log in with `hf auth login` or set HF_TOKEN)")
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()


def test_existing_out_is_refused_and_kept(chain, gemma4):
    out = chain["out"]
    before = {p.name: sha(p) for p in out.iterdir()}
    done = run_cli("--base", str(gemma4), "--adapter", str(chain["a1"]), "--out", str(out), "--dtype", "float32")
    assert done.returncode == 2
    assert "already exists" in done.stderr and "--force" in done.stderr
    assert {p.name: sha(p) for p in out.iterdir()} == before


def test_zero_tolerance_in_bfloat16_fails_and_writes_nothing(chain, gemma4):
    out = chain["root"] / "strict"
    done = run_cli("--base", str(gemma4), "--adapter", str(chain["a1"]), "--adapter", str(chain["a2"]),
                   "--out", str(out), "--merge-dtype", "bfloat16", "--tolerance", "0")
    assert done.returncode == 2
    assert "over the tolerance" in done.stderr
    assert not out.exists()
    assert not list(chain["root"].glob(".strict*")), "staging directory left behind"


def test_a_merge_that_drops_the_adapter_is_caught(chain, gemma4, monkeypatch, capsys):
    # Sabotage PEFT's merge: unload the adapter instead of folding it in.
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, *a, **k: self.unload())
    out = chain["root"] / "sabotaged"
    code = merge_main(["--base", str(gemma4), "--adapter", str(chain["a1"]), "--out", str(out), "--dtype", "float32"])
    assert code == 2
    assert "differs from the unmerged adapters" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["modules_to_save", "trainable_tokens"])
def test_adapter_with_added_tokens(kind, tiny_model, tmp_path):
    base = tiny_model("qwen3")
    tokenizer = AutoTokenizer.from_pretrained(base)
    base_len = len(tokenizer)
    tokenizer.add_tokens(["<tool_call>", "</tool_call>"], special_tokens=True)
    new_ids = tokenizer.convert_tokens_to_ids(["<tool_call>", "</tool_call>"])
    extra = (dict(modules_to_save=["embed_tokens", "lm_head"]) if kind == "modules_to_save"
             else dict(trainable_token_indices={"embed_tokens": new_ids}))
    adapter = make_lora(base, tmp_path / "adapter", seed=3, tokenizer=tokenizer, **extra)

    out = tmp_path / "merged"
    assert merge_main(["--base", str(base), "--adapter", str(adapter), "--out", str(out), "--dtype", "float32"]) == 0
    saved = AutoTokenizer.from_pretrained(out)
    assert len(saved) == base_len + 2 and saved.convert_tokens_to_ids("</tool_call>") == new_ids[1]
    texts = probe_texts(saved, ["<tool_call>", "</tool_call>"])
    reference = peft_logits(base, [adapter], texts, tokenizer, vocab=len(tokenizer))
    assert max_diff(model_logits(out, texts, saved), reference) < ATOL
    merge = json.loads((out / "manifest.json").read_text())["merge"]
    assert merge["added_tokens"] == ["<tool_call>", "</tool_call>"]
    assert merge["vocab_rows"] == base_len + 2
    assert "<|im_end|>" == merge["end_of_turn_token"]


def test_reward_model_adapter(tiny_model, tmp_path):
    base = tiny_model("llama", "seq_cls")
    adapter = make_lora(base, tmp_path / "adapter", seed=4, task_type="SEQ_CLS")
    out = tmp_path / "merged"
    assert merge_main(["--base", str(base), "--adapter", str(adapter), "--out", str(out), "--dtype", "float32"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = probe_texts(tokenizer)
    unmerged = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base), str(adapter))
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert max_diff(probe_logits(merged, tokenizer, texts), probe_logits(unmerged.eval(), tokenizer, texts)) < ATOL


def test_base_without_chat_template_is_refused(gemma4, chain, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(gemma4, bare)
    (bare / "chat_template.jinja").unlink()
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "merged"
    assert merge_main(["--base", str(bare), "--adapter", str(chain["a1"]), "--out", str(out)]) == 2
    assert "has no chat template" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def axolotl_adapter(shared_smoke_run):
    # the run of tests/training/test_recipes.py
    return shared_smoke_run(REPO_ROOT / "recipes" / "supervisor_stage1.yml", SMOKE_STEPS)


@pytest.mark.train
def test_merge_an_adapter_axolotl_trained(axolotl_adapter, tmp_path):
    """--config reads base_model, output_dir and eot_tokens from the recipe Axolotl ran."""
    import yaml

    config = yaml.safe_load(axolotl_adapter.config_path.read_text())
    out = tmp_path / "merged"
    done = run_cli("--config", str(axolotl_adapter.config_path), "--out", str(out), "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = probe_texts(tokenizer)
    reference = peft_logits(Path(config["base_model"]), [axolotl_adapter.output_dir], texts, tokenizer)
    assert max_diff(model_logits(out, texts, tokenizer), reference) < ATOL
    merge = json.loads((out / "manifest.json").read_text())["merge"]
    assert merge["end_of_turn_token"] == "<turn|>"
    assert merge["base"] == config["base_model"]

    # The merged supervisor loads as its base does: same class, same processor file, and the
    # recipe's LoRA changed the language model's projections and not one bit of anything else.
    base = Path(config["base_model"])
    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert merge["processor_files"] == ["processor_config.json"]
    assert (out / "processor_config.json").read_bytes() == (base / "processor_config.json").read_bytes()
    assert changed_weights(base, out) == {
        f"model.language_model.layers.{i}.{p}.weight" for i in range(2) for p in PROJECTIONS}

    # The card reads the training run's manifest (from Axolotl's plugin) and its run configuration's header.
    card = (out / "README.md").read_text()
    assert "| Recipes | `recipes/supervisor_stage1.yml` |" in card
    assert f"| `max_steps` | {SMOKE_STEPS} |" in card and f"| `micro_batch_size` | {config['micro_batch_size']} |" in card
    for item in read_header(REPO_ROOT / "recipes" / "supervisor_stage1.yml").deviations:
        assert f"- {item}\n" in card
    # the tiny base stood in for the recipe's base model, which the card names with its licence and language
    hub = {"base_model": "google/gemma-4-12B-it", "license": "gemma", "language": ["ko"],
           "private": [tmp_path, base, axolotl_adapter.output_dir.parent]}
    hub_card(out / "README.md", **hub)
    # and so does the 4-bit export of the merged model, followed back through the merge to the training run
    assert quantize_main(["--model", str(out), "--out", str(tmp_path / "nf4"), "--device", "cpu"]) == 0
    hub_card(tmp_path / "nf4" / "README.md", **hub)


def test_merged_gemma3_keeps_its_processor_and_vision_tower(tiny_model, tmp_path):
    base = tiny_model("gemma3")
    targets = load_recipe(RECIPES_DIR / "cs_chatbot_gemma3_4b.yml")["lora_target_modules"]
    adapter = make_lora(base, tmp_path / "adapter", seed=5, target_modules=targets)
    out = tmp_path / "merged"
    assert merge_main(["--base", str(base), "--adapter", str(adapter), "--out", str(out), "--dtype", "float32"]) == 0
    for name in ("processor_config.json", "preprocessor_config.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes()
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "Gemma3Processor"
    # on disk Gemma 3 keeps the released layout: language_model.model.*, vision_tower.*
    assert changed_weights(base, out) == {
        f"language_model.model.layers.{i}.{p}.weight" for i in range(2) for p in PROJECTIONS}
