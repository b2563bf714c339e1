"""The benchmarked model: a transformers config -> random weights -> LoRA r=16 on all linear layers.

Nothing is downloaded. `--tiny` takes the tiny Gemma 4 of recipekit.testing.tiny_models; the real run
takes a config.json file (the model's own, or its `text_config`), see bench/README.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from recipekit.errors import RecipekitError
from recipekit.testing.tiny_models import tiny_model_path

# The supervisor recipes' adapter (recipes/supervisor_stage2.yml).
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", bias="none")


class BenchError(RecipekitError, RuntimeError):
    """A benchmark that cannot run as asked (bad config file, missing input)."""


def load_text_config(model_config: str | Path | None, tiny: bool):
    """The decoder config to build: the text part of a config.json file, or with `tiny` and none the tiny Gemma 4."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if tiny and model_config is None:
        return AutoConfig.from_pretrained(tiny_model_path("gemma4")).get_text_config()
    if model_config is None:
        raise BenchError("--model-config is required without --tiny: the config.json of the model to build "
                         "(see bench/README.md, 'The model configuration')")
    path = Path(model_config)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"{path}: cannot read a JSON config: {err}") from err
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in CONFIG_MAPPING:
        raise BenchError(f"{path}: field 'model_type' is {model_type!r}, which transformers does not know")
    config = CONFIG_MAPPING[model_type].from_dict(data)
    return config.get_text_config()


def check_architecture(config: Any, name: str) -> None:
    """Refuse a config whose shape is not the named model's published one (a wrong file, a smaller sibling)."""
    from recipekit.bench.projection import ARCHITECTURES

    model = ARCHITECTURES[name]
    published = {"num_hidden_layers": model.layers, "hidden_size": model.hidden, "vocab_size": model.vocab}
    for field, expected in published.items():
        found = getattr(config, field, None)
        if found != expected:
            raise BenchError(f"--model-config: field {field!r} is {found!r}, {name} has {expected}: "
                             "not the config of that model")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def missing_requirement(*, cuda: bool = False, packages: tuple[str, ...] = ()) -> str | None:
    """Why a variant cannot run here (needs CUDA / a package not installed), or None."""
    if cuda and not cuda_available():
        return "needs CUDA (no GPU on this machine)"
    absent = [name for name in packages if importlib.util.find_spec(name) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (pip install -r requirements-gpu.txt on a CUDA machine)"
    return None


def build_model(config: Any, *, attn_implementation: str, device: str, dtype, seed: int, liger: bool = False):
    """Random-weight causal LM of `config`, created directly on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    if liger:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

        apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(config.model_type)
        if apply is None:
            raise BenchError(f"Liger has no kernels for model_type {config.model_type!r}")
        apply()  # patches the modeling classes, so it comes before the model is built
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return model


def add_lora(model, *, gradient_checkpointing: bool = True, lora_kernels: bool = False):
    """The recipe's LoRA on every linear layer; Axolotl's fused LoRA kernels when asked."""
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    if lora_kernels:
        from axolotl.monkeypatch.lora_kernels import apply_lora_kernel_patches
        from axolotl.utils.dict import DictDefault

        cfg = DictDefault(lora_mlp_kernel=True, lora_qkv_kernel=True, lora_o_kernel=True)
        peft_model = apply_lora_kernel_patches(peft_model, cfg)
    return peft_model
