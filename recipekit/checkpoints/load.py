"""Loading and saving standalone checkpoints: model class, dtype, attention kernel, tokenizer,
generation config; and the resumable checkpoint-N directories a training run leaves.

Every model that generates, judges or scores is loaded here. The merge and the 4-bit
export also write a new directory that must load with `from_pretrained` and generate with
the right stop tokens.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from recipekit.checkpoints.model_path import resolve_model_path
from recipekit.errors import RecipekitError
from recipekit.templates.special_tokens import END_OF_TURN_TOKENS

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")
# What a multimodal checkpoint's processor reads besides the tokenizer: transformers 5 writes
# processor_config.json alone; older checkpoints (Gemma 3) split off the image and video
# processors' settings.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# The Hugging Face trainer saves a checkpoint-N directory in place and writes this file last.
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")

if TYPE_CHECKING:  # torch is imported where a model loads, so a command can refuse bad arguments first
    import torch


class CheckpointError(RecipekitError, RuntimeError):
    """A checkpoint that cannot be loaded, merged or written as asked."""


def refuse_sharded(path: str | Path) -> None:
    """Refuse a directory that holds FSDP's per-rank shards (SHARDED_STATE_DICT) but no whole weights.

    The Trainer saves every checkpoint of an FSDP run this way unless told otherwise, as
    torch.distributed.checkpoint files under `pytorch_model_fsdp_0/`, which nothing here can load.
    """
    path = Path(path)
    shards = sorted(path.glob("pytorch_model_fsdp_*")) if path.is_dir() else []
    if shards and not weights_size(path):
        raise CheckpointError(
            f"{path} holds only FSDP shards ({shards[0].name}/, one file per rank), no whole weights: train with "
            f"fsdp_config.final_state_dict_type: FULL_STATE_DICT (recipes/launch/fsdp2.yml) and use the output_dir "
            f"it writes, or gather these shards into one file with `accelerate merge-weights {shards[0]} OUT`"
        )


def refuse_existing(out: Path, force: bool) -> None:
    """Fail before any expensive work if OUT exists and --force was not given."""
    if out.exists() and not force:
        raise CheckpointError(f"{out} already exists; pass --force to replace it")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_class(config):
    """AutoModelForSequenceClassification for reward models, AutoModelForCausalLM otherwise."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    architectures = getattr(config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def attention_implementation(config, device: str, dtype: torch.dtype | None) -> str | None:
    """An attention kernel that applies the model's attention-logit soft-cap, or None for the default.

    SDPA (transformers' default) silently skips the tanh cap Gemma 2 puts on its attention
    scores, so such a model would generate and score as a different function from the one
    trained with flash-attention. Flash-attention 2 applies the cap but only runs in half
    precision on CUDA; eager applies it everywhere. `dtype` None means the checkpoint's own.
    """
    import torch
    from transformers.utils import is_flash_attn_2_available

    text = config.get_text_config(decoder=True)  # multimodal configs nest the decoder's
    if getattr(text, "attn_logit_softcapping", None) is None:
        return None
    dtype = dtype or text.dtype or config.dtype
    if str(device).startswith("cuda") and dtype in (torch.float16, torch.bfloat16) and is_flash_attn_2_available():
        return "flash_attention_2"
    return "eager"


def load_model(path: str | Path, dtype: torch.dtype | str | None, device: str, **kwargs):
    """Load `path` for inference; dtype None or "auto" keeps the dtype the checkpoint was saved in.

    Every model that generates, judges or scores here is loaded through this, so each gets
    an attention kernel that computes what training computed (`attention_implementation`).
    """
    import torch
    from transformers import AutoConfig

    path = resolve_model_path(path)
    refuse_sharded(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a model checkpoint ({err})") from err
    if isinstance(dtype, str):
        dtype = None if dtype == "auto" else getattr(torch, dtype)
    kwargs.setdefault("attn_implementation", attention_implementation(config, device, dtype))
    model = model_class(config).from_pretrained(path, dtype=dtype or "auto", device_map={"": device}, **kwargs)
    return model.eval()


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / name).is_file() for name in TOKENIZER_FILES)


def copy_processor_files(source: str | Path, out: Path) -> list[str]:
    """Copy the processor files `source` (a directory or hub name) has into `out`, unchanged.

    A checkpoint written from the model weights alone would lose them, and with them the
    processor that Axolotl, vLLM and `AutoProcessor` load for a multimodal model.
    """
    from transformers.utils import cached_file

    copied = []
    for name in PROCESSOR_FILES:
        path = cached_file(str(source), name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
        if path is not None:
            shutil.copyfile(path, out / name)
            copied.append(name)
    return copied


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = resolve_model_path(path, "tokenizer")
    refuse_sharded(path)
    return AutoTokenizer.from_pretrained(path)


def load_chat_tokenizer(path: str | Path):
    """The tokenizer of `path`, refused (CheckpointError) without a chat template."""
    tokenizer = load_tokenizer(path)
    require_chat_template(tokenizer, path)
    return tokenizer


def require_chat_template(tokenizer, source: str | Path, error: type[Exception] = CheckpointError) -> None:
    """Refuse a tokenizer without a chat template, raising `error` (the caller's own error type)."""
    if not getattr(tokenizer, "chat_template", None):
        raise error(
            f"{source}: the tokenizer has no chat template (no chat_template.jinja and no "
            f"'chat_template' in tokenizer_config.json); a checkpoint without one cannot be "
            f"prompted the way it was trained, so nothing was written"
        )


def token_id(tokenizer, token: str) -> int | None:
    """The id of `token` if the tokenizer has it as one token, else None."""
    ids = tokenizer.convert_tokens_to_ids([token])
    tid = ids[0] if ids else None
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return tid


def end_of_turn_token(tokenizer, explicit: str | None = None) -> str:
    """The token that closes an assistant turn in the tokenizer's chat template.

    An explicit choice must be a single token; otherwise the first known end-of-turn
    token that the template uses, falling back to EOS (templates that end turns with it).
    """
    if explicit is not None:
        if token_id(tokenizer, explicit) is None:
            raise CheckpointError(f"end-of-turn token {explicit!r} is not a single token of the tokenizer")
        return explicit
    template = tokenizer.chat_template or ""
    for candidate in END_OF_TURN_TOKENS:
        if candidate in template and token_id(tokenizer, candidate) is not None:
            return candidate
    if tokenizer.eos_token is None:
        raise CheckpointError("the tokenizer has neither a known end-of-turn token nor an EOS token")
    return tokenizer.eos_token


def generation_config_for(model, source: str | Path, tokenizer, eot_token: str):
    """The source's generation config (sampling defaults kept) with EOS ids that stop at end of turn."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(source)
    except OSError:
        config = GenerationConfig.from_model_config(model.config)
    existing = config.eos_token_id
    eos_ids = list(existing) if isinstance(existing, (list, tuple)) else [existing]
    eos_ids += [tokenizer.eos_token_id, token_id(tokenizer, eot_token)]
    config.eos_token_id = [int(i) for i in dict.fromkeys(eos_ids) if i is not None]
    if tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    return config


def weights_size(path: str | Path) -> int:
    """Bytes of the weight files in a checkpoint directory."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def human_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _checkpoint_dirs(output_dir: str | Path) -> dict[int, Path]:
    """A training run's checkpoint-N directories, by step N."""
    found = {}
    for path in Path(output_dir).glob("checkpoint-*"):
        match = _CHECKPOINT_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def _is_complete(checkpoint: Path) -> bool:
    """Its trainer state, written last, is there and whole."""
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def complete_checkpoints(output_dir: str | Path) -> list[int]:
    """Steps of the checkpoints a run can resume from."""
    return [step for step, path in _checkpoint_dirs(output_dir).items() if _is_complete(path)]


def remove_incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint-N directories whose save was cut short, so that resuming picks the last
    complete one; the run saves step N again when it gets there."""
    removed = [path for path in _checkpoint_dirs(output_dir).values() if not _is_complete(path)]
    for path in removed:
        print(f"{path}: incomplete checkpoint (its save was interrupted); removed")
        shutil.rmtree(path)
    return removed
