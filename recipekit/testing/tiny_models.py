"""Tiny, random-init models of each recipe family's real architecture, built offline.

Each family gets the class that `AutoModelForCausalLM` builds for the real checkpoint
(Gemma 4 and Gemma 3 with a tiny vision tower, Gemma 2, Qwen 3, Llama) at a few
thousand parameters per layer, and a byte-level BPE tokenizer that carries the family's
real special tokens and chat template. Multimodal families also get the real
checkpoint's processor files, scaled to the tiny vision tower. Everything is seeded, so
two builds are identical; a build takes seconds and lands in a git-ignored cache keyed
by a hash of its specification. Nothing is ever downloaded.

    python -m recipekit.testing.tiny_models gemma4          # prints the path of the tiny model
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recipekit.checkpoints.origin import write_origin
from recipekit.dataio.atomic import atomic_directory
from recipekit.paths import CHAT_TEMPLATES_DIR, cache_dir
from recipekit.templates.special_tokens import backfill_sentinels
from recipekit.testing import cached_build

BUILDER_VERSION = 3  # 3: origin.json says the model is a stand-in
SEED = 1234
VOCAB_SIZE = 640  # 256 byte tokens + merges + the family's special tokens

# Shared shape: small enough to train in seconds on two CPU cores, large enough for
# grouped-query attention and several layers of the family's layer pattern.
TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=4096,
)


@dataclass(frozen=True)
class Multimodal:
    """The parts a multimodal checkpoint adds around its text decoder."""

    vision_config: dict
    media_tokens: dict[str, str]  # tokenizer attribute -> token, as in the real tokenizer_config.json
    token_id_fields: dict[str, str]  # composite config field -> the token whose id it holds
    processor_files: dict[str, dict]  # file name -> JSON content, as the real checkpoint ships them
    config_extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """What makes a tiny model look like the real family to Axolotl and transformers."""

    name: str
    model_type: str  # transformers config model_type
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    turn_tokens: tuple[str, ...]  # the chat template's own special tokens
    chat_template: str  # file in chat_templates/
    end_of_turn: str  # the token that closes an assistant turn
    add_bos: bool  # does the real tokenizer prepend BOS when encoding?
    config_extra: dict = field(default_factory=dict)  # the decoder's config (text_config if multimodal)
    extra_special: tuple[str, ...] = ()
    multimodal: Multimodal | None = None


# google/gemma-3-4b-it: a SigLIP vision tower; the tiny one sees a 16 px image as 4x4 patches,
# pooled to 2x2 = 4 soft tokens per image.
_GEMMA3_IMAGE_SIZE, _GEMMA3_IMAGE_TOKENS = 16, 4
_GEMMA3_VISION = Multimodal(
    vision_config=dict(
        model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, image_size=_GEMMA3_IMAGE_SIZE, patch_size=4, vision_use_head=False,
    ),
    media_tokens=dict(boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>"),
    token_id_fields=dict(
        boi_token_index="<start_of_image>", eoi_token_index="<end_of_image>", image_token_index="<image_soft_token>"
    ),
    config_extra=dict(mm_tokens_per_image=_GEMMA3_IMAGE_TOKENS),
    processor_files={
        "processor_config.json": dict(processor_class="Gemma3Processor", image_seq_length=_GEMMA3_IMAGE_TOKENS),
        "preprocessor_config.json": dict(
            image_processor_type="Gemma3ImageProcessor", processor_class="Gemma3Processor",
            image_seq_length=_GEMMA3_IMAGE_TOKENS, size=dict(height=_GEMMA3_IMAGE_SIZE, width=_GEMMA3_IMAGE_SIZE),
            resample=2, do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        ),
    },
)
# google/gemma-4-12B-it is encoder-free: merged pixel patches go through one projection into
# the decoder. Tiny: patches of 4 px merged 2x2, at most 70 soft tokens per image (the
# smallest budget its processor accepts), so 70 positions per axis suffice.
_GEMMA4_PATCHES = dict(patch_size=4, pooling_kernel_size=2, max_soft_tokens=70)
_GEMMA4_VISION = Multimodal(
    vision_config=dict(
        patch_size=_GEMMA4_PATCHES["patch_size"], pooling_kernel_size=_GEMMA4_PATCHES["pooling_kernel_size"],
        mm_posemb_size=_GEMMA4_PATCHES["max_soft_tokens"],
        mm_embed_dim=TINY_SHAPE["hidden_size"], output_proj_dims=TINY_SHAPE["hidden_size"],
    ),
    media_tokens=dict(
        image_token="<|image|>", boi_token="<|image>", eoi_token="<image|>",
        audio_token="<|audio|>", boa_token="<|audio>", eoa_token="<audio|>",
    ),
    token_id_fields=dict(
        image_token_id="<|image|>", boi_token_id="<|image>", eoi_token_id="<image|>", video_token_id="<|video|>",
        audio_token_id="<|audio|>", boa_token_id="<|audio>", eoa_token_index="<audio|>",
    ),
    processor_files={
        # the layout transformers 5 writes: one file, the sub-processors nested in it
        "processor_config.json": dict(
            processor_class="Gemma4UnifiedProcessor",
            image_seq_length=_GEMMA4_PATCHES["max_soft_tokens"], audio_seq_length=750,
            image_processor=dict(image_processor_type="Gemma4UnifiedImageProcessor", **_GEMMA4_PATCHES),
            video_processor=dict(video_processor_type="Gemma4UnifiedVideoProcessor", **_GEMMA4_PATCHES),
            feature_extractor=dict(feature_extractor_type="Gemma4UnifiedAudioFeatureExtractor"),
        ),
    },
)
_GEMMA3 = Family(
    name="gemma3",
    model_type="gemma3",
    bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
    turn_tokens=("<start_of_turn>", "<end_of_turn>"),
    chat_template="gemma3.jinja",
    end_of_turn="<end_of_turn>",
    add_bos=True,
    config_extra=dict(sliding_window=64, layer_types=["sliding_attention", "full_attention"],
                      query_pre_attn_scalar=16),
    multimodal=_GEMMA3_VISION,
)
_QWEN3 = Family(
    name="qwen3",
    model_type="qwen3",
    bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None,
    turn_tokens=("<|im_start|>", "<|im_end|>", "<think>", "</think>"),
    chat_template="chatml.jinja",
    end_of_turn="<|im_end|>",
    add_bos=False,
    config_extra=dict(tie_word_embeddings=True),
)
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            name="gemma4",
            model_type="gemma4_unified",
            bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
            turn_tokens=("<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>"),
            chat_template="gemma4.jinja",
            end_of_turn="<turn|>",
            add_bos=True,
            config_extra=dict(
                sliding_window=64,
                layer_types=["sliding_attention", "full_attention"],
                global_head_dim=16,
            ),
            # the real checkpoint's tokenizer has the video token among its extra special tokens
            extra_special=("<|video|>",),
            multimodal=_GEMMA4_VISION,
        ),
        _GEMMA3,
        # Gemma 2 shares Gemma 3's turn tokens; it is text only and its template has no system role.
        replace(_GEMMA3, name="gemma2", model_type="gemma2", chat_template="gemma2.jinja", multimodal=None),
        _QWEN3,
        # A trained backfiller: Qwen 3 whose tokenizer already has the six sentinels.
        replace(_QWEN3, name="qwen3_backfill", extra_special=tuple(backfill_sentinels())),
        Family(
            name="llama",
            model_type="llama",
            bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
            turn_tokens=("<|system|>", "<|user|>", "<|assistant|>"),
            chat_template="sarashina.jinja",
            end_of_turn="</s>",
            add_bos=False,
            config_extra=dict(tie_word_embeddings=False),
        ),
    ]
}

# Seed-card base models and the family that stands in for them on CPU.
BASE_MODEL_FAMILIES = {
    "gemma-4": "gemma4",
    "gemma-3": "gemma3",
    "gemma-2": "gemma2",
    "qwen3": "qwen3",
    "sarashina": "llama",
    "llama": "llama",
}


def family_for_base_model(base_model: str) -> str:
    """Map a hub name like google/gemma-4-12B-it to the tiny family that mirrors it."""
    lowered = base_model.lower()
    for marker, family in BASE_MODEL_FAMILIES.items():
        if marker in lowered:
            return family
    raise KeyError(f"no tiny family known for base model {base_model!r}; known markers: {sorted(BASE_MODEL_FAMILIES)}")


def _corpus() -> list[str]:
    """Training text for the tiny BPE: the fixtures plus a few scripts, so merges are mixed."""
    lines = [
        "The customer asked about the washing machine warranty and the agent answered.",
        "고객이 세탁기 보증 기간에 대해 문의했고 상담원이 답변했습니다. 올바른 답변입니다.",
        "手軽に栄養を補給できる食事を教えてください。納豆ご飯がおすすめです。",
        "Der Kunde fragte nach der Garantie. La cliente preguntó por la garantía.",
        '{"label": "correct", "reason": "the answer matches the document"} <think> </think>',
        "def solve(x):\n    return x * 2  # reasoning, instruction, solution, thinking\n",
    ]
    from recipekit.testing import FIXTURES_DIR

    for path in sorted(FIXTURES_DIR.rglob("*")):
        if path.suffix in {".jsonl", ".csv", ".txt"}:
            lines.extend(path.read_text(encoding="utf-8").splitlines()[:200])
    return lines


def _build_tokenizer(family: Family):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = [t for t in (family.pad, family.eos, family.bos, family.unk) if t]
    media = family.multimodal.media_tokens if family.multimodal else {}
    extra = list(family.turn_tokens) + list(family.extra_special)
    specials = list(dict.fromkeys(core + extra + list(media.values())))
    tok = Tokenizer(models.BPE(unk_token=family.unk, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if family.add_bos:
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B", special_tokens=[(family.bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token=family.unk,
        additional_special_tokens=extra,
        model_specific_special_tokens=media,  # e.g. tokenizer.image_token, which the processor reads
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = (CHAT_TEMPLATES_DIR / family.chat_template).read_text(encoding="utf-8")
    return fast


def _build_model(family: Family, tokenizer, task: str, shape: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(SEED)
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    decoder = {**ids, **family.config_extra, **shape}
    mm = family.multimodal
    if mm is None:
        config = AutoConfig.for_model(family.model_type, **decoder)
    else:
        token_ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in mm.token_id_fields.items()}
        config = AutoConfig.for_model(family.model_type, text_config=decoder, vision_config=mm.vision_config,
                                      **token_ids, **mm.config_extra)
    if task == "seq_cls":
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    # Random init with a fixed seed; float32 keeps CPU training and merge checks exact.
    return model.to(torch.float32)


def _shape(family: Family, head_dim: int | None) -> dict:
    """TINY_SHAPE, or with wider attention heads (every attention layer's, Gemma 4's global ones too)."""
    if head_dim is None:
        return TINY_SHAPE
    wide = {**TINY_SHAPE, "head_dim": head_dim}
    return {**wide, "global_head_dim": head_dim} if "global_head_dim" in family.config_extra else wide


def _spec(family: Family, task: str, shape: dict) -> dict:
    template = (CHAT_TEMPLATES_DIR / family.chat_template).read_text(encoding="utf-8")
    return dict(
        builder=BUILDER_VERSION,
        family=asdict(family),
        task=task,
        shape=shape,
        vocab=VOCAB_SIZE,
        seed=SEED,
        template_sha=hashlib.sha256(template.encode()).hexdigest(),
        corpus_sha=hashlib.sha256("\n".join(_corpus()).encode()).hexdigest(),
    )


def tiny_model_path(family_name: str, task: str = "causal_lm", head_dim: int | None = None) -> Path:
    """Return the directory of the tiny model, building it first if the cache lacks it. `head_dim` widens the
    attention heads: vLLM's CPU attention kernels take 32 and more, not the 16 of TINY_SHAPE."""
    if family_name not in FAMILIES:
        raise KeyError(f"unknown family {family_name!r}; choose from {sorted(FAMILIES)}")
    if task not in {"causal_lm", "seq_cls"}:
        raise ValueError(f"task must be causal_lm or seq_cls, not {task!r}")
    family = FAMILIES[family_name]
    shape = _shape(family, head_dim)
    spec = _spec(family, task, shape)
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / "tiny_models" / f"{family_name}-{task}-{key}"

    def build(entry: Path) -> None:
        tokenizer = _build_tokenizer(family)
        model = _build_model(family, tokenizer, task, shape)
        with atomic_directory(entry) as staging:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            for name, content in (family.multimodal.processor_files if family.multimodal else {}).items():
                (staging / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            (staging / "tiny_model_spec.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False))
            # A model card of a checkpoint trained from it names the recipe's base_model, which it stands in for.
            write_origin(staging, f"a random-init tiny {family_name} model, built locally by recipekit.testing.tiny_models")

    return cached_build(target, build)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--task", choices=["causal_lm", "seq_cls"], default="causal_lm")
    parser.add_argument("--head-dim", type=int, help="wider attention heads (e.g. 32, for vLLM's CPU kernels)")
    args = parser.parse_args(argv)
    print(tiny_model_path(args.family, args.task, args.head_dim))


if __name__ == "__main__":
    main()
