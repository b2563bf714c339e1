"""Merge a chain of PEFT adapters into their base and save a standalone, verified checkpoint.

    python merge/merge_lora.py --base BASE --adapter STAGE1 [--adapter STAGE2 ...] --out OUT
    python merge/merge_lora.py --config recipes/supervisor_stage1.yml --out OUT

Adapters are merged in order with PEFT (`PeftModel.from_pretrained` then
`merge_and_unload`): stage 1 into the base, stage 2 on top of that, as the two-stage
recipes train them. Adapters trained with added tokens get the base embeddings resized
to the adapter's vocabulary first; embedding and head copies saved in the adapter
(modules_to_save, trainable tokens) are merged with it. The output keeps the base's
class and gets its processor files unchanged, so a multimodal base (Gemma 3, Gemma 4)
loads with its processor from it as before.

Verification, before anything is written. Each stage's merged model is compared with the
same stage held unmerged (a PeftModel on top of the previous stage). For a chain of plain
LoRA adapters there is also an end-to-end reference that never touches the merge code:
the untouched base with every adapter loaded unmerged and active at once. LoRA deltas
add up (W + s1·B1A1 + s2·B2A2), and stage 2 was trained on the exact merge of stage 1,
so this stack is the function the chain is meant to compute. Adapters whose effect is not
additive (DoRA, modules_to_save or trainable-token copies, which replace rather than add)
cannot be stacked, so for them the stage-wise comparison is the reference. The largest
difference must stay under the tolerance, or the command fails and writes nothing.

The merge arithmetic and its check run in --merge-dtype (float32 by default), and the
result is cast to --dtype only when it is saved: one rounding instead of one per stage,
and a check that measures the merge rather than half-precision noise (in bfloat16 even
the unmerged model drifts from itself by a sizeable fraction of its logits' scale). The
drift that the final cast adds is reported, not checked. float32 needs twice the memory
of bfloat16 (about 48 GB for a 12B model); --merge-dtype bfloat16 halves it, at the price
of a tolerance that catches only gross errors such as a missing or mis-scaled adapter.
The default tolerance is 1e-4 (float32), 3e-2 (float16) or 2.5e-1 (bfloat16) times
max(1, max |reference logit|).

The output directory also gets a README.md model card (recipekit/reporting/model_card.py) built from
the manifests of the merge and of the training runs behind the adapters. With
--push-to-hub REPO [--private], the finished, verified directory is uploaded with it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recipekit.checkpoints.hub import ExportRequest, add_push_args
from recipekit.checkpoints.load import (
    CheckpointError,
    copy_processor_files,
    default_device,
    end_of_turn_token,
    generation_config_for,
    has_tokenizer,
    load_chat_tokenizer,
    load_model,
    load_tokenizer,
    refuse_sharded,
)
from recipekit.checkpoints.model_path import check_model_args
from recipekit.checkpoints.probes import LogitDiff, compare_logits, probe_logits, probe_texts
from recipekit.cli import command
from recipekit.dataio.atomic import atomic_directory
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.model_card import write_card
from recipekit.training.recipe_config import RecipeError, load_recipe

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
RELATIVE_TOLERANCE = {"float32": 1e-4, "float16": 3e-2, "bfloat16": 2.5e-1}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Keys of an adapter's weights that add a low-rank delta; anything else replaces weights.
ADDITIVE_KEY_MARKERS = (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B")


class MergeVerificationError(CheckpointError):
    """The merged model does not compute what the unmerged adapters compute."""


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    weight_shapes: dict[str, tuple[int, ...]]

    @property
    def additive(self) -> bool:
        """True when the adapter only adds low-rank deltas, so it can be stacked with others."""
        return (
            self.config.get("peft_type") == "LORA"
            and not self.config.get("use_dora")
            and all(any(m in key for m in ADDITIVE_KEY_MARKERS) for key in self.weight_shapes)
        )

    def embedding_rows(self) -> int | None:
        """Vocabulary rows of the embedding copy the adapter carries, if any."""
        for key, shape in self.weight_shapes.items():
            # ".embed_tokens." leaves out Gemma's per-layer embeddings (embed_tokens_per_layer).
            full_copy = not any(m in key for m in (*ADDITIVE_KEY_MARKERS, "trainable_tokens_delta"))
            if ".embed_tokens." in key and full_copy and len(shape) == 2:
                return shape[0]
        return None

    def vocab_size(self, base_rows: int) -> int | None:
        """Embedding rows the adapter needs: its embedding copy's, else its tokenizer's if longer.

        A tokenizer shorter than the embedding matrix (padded vocabularies) needs no resize.
        """
        rows = self.embedding_rows()
        if rows is not None:
            return rows
        if has_tokenizer(self.path) and len(load_tokenizer(self.path)) > base_rows:
            return len(load_tokenizer(self.path))
        return None


def read_adapter(path: Path) -> Adapter:
    refuse_sharded(path)
    config_path = path / ADAPTER_CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{path}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path}: line {err.lineno}: not valid JSON ({err.msg})") from err
    weights = next((path / name for name in ADAPTER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(weights, framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        shapes = {key: tuple(value.shape) for key, value in state.items()}
    return Adapter(path, config, shapes)


def target_vocab_size(adapters: list[Adapter], base_rows: int) -> int:
    """Rows the base embedding needs so every adapter loads; adapters must agree."""
    sizes = {a.path: a.vocab_size(base_rows) for a in adapters}
    wanted = {size for size in sizes.values() if size is not None}
    if len(wanted) > 1:
        listing = ", ".join(f"{path}: {size}" for path, size in sizes.items())
        raise CheckpointError(
            f"the adapters were trained with different vocabulary sizes ({listing}); merge them "
            f"one run at a time, each on the previous merged checkpoint"
        )
    return wanted.pop() if wanted else base_rows


def added_tokens(tokenizer, base_tokenizer) -> list[str]:
    """Tokens the final tokenizer has that the base tokenizer lacks."""
    base_vocab = base_tokenizer.get_vocab()
    return sorted((t for t in tokenizer.get_vocab() if t not in base_vocab), key=tokenizer.convert_tokens_to_ids)


def default_tolerance(dtype_name: str, reference_scale: float) -> float:
    return RELATIVE_TOLERANCE[dtype_name] * max(1.0, reference_scale)


@dataclass
class MergeResult:
    model: Any
    stage_diffs: list[LogitDiff]
    chain_diff: LogitDiff | None  # against the stacked unmerged adapters, when they stack
    reference: list[torch.Tensor]  # logits of the best unmerged reference for the whole chain

    @property
    def worst(self) -> LogitDiff:
        return max([*self.stage_diffs, *([self.chain_diff] if self.chain_diff else [])], key=lambda d: d.max_abs)


def _stacked_reference(model, adapters: list[Adapter], tokenizer, texts: list[str]):
    """Logits of the base with every adapter unmerged and active; returns them and the clean base."""
    from peft import PeftModel

    names = [f"stage{i + 1}" for i in range(len(adapters))]
    stacked = PeftModel.from_pretrained(model, str(adapters[0].path), adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        stacked.load_adapter(str(adapter.path), adapter_name=name)
    stacked.base_model.set_adapter(names)
    stacked.eval()
    logits = probe_logits(stacked, tokenizer, texts)
    return logits, stacked.unload()


def load_unmerged(model, adapter: Adapter):
    """Load `adapter` unmerged on top of `model` (the previous stage, already merged)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter.path)).eval()


def merge_chain(model, adapters: list[Adapter], tokenizer, texts: list[str]) -> MergeResult:
    """Merge `adapters` into `model` in order, comparing logits at every step."""
    reference = None
    if len(adapters) > 1 and all(a.additive for a in adapters):
        reference, model = _stacked_reference(model, adapters, tokenizer, texts)
    stage_diffs = []
    for index, adapter in enumerate(adapters, start=1):
        unmerged = load_unmerged(model, adapter)
        before = probe_logits(unmerged, tokenizer, texts)
        model = unmerged.merge_and_unload()
        after = probe_logits(model, tokenizer, texts)
        stage_diffs.append(compare_logits(before, after))
        print(f"stage {index} ({adapter.path}): max |logit diff| unmerged vs merged = {stage_diffs[-1].max_abs:.3e}")
    chain_diff = None
    if reference is not None:
        chain_diff = compare_logits(reference, after)
        print(f"chain: max |logit diff| stacked unmerged adapters vs merged = {chain_diff.max_abs:.3e}")
    return MergeResult(model, stage_diffs, chain_diff, reference if reference is not None else before)


@dataclass(kw_only=True)
class MergeRequest(ExportRequest):
    base: str
    adapters: list[Path]
    dtype: str = "bfloat16"
    merge_dtype: str = "float32"
    tolerance: float | None = None
    eot_token: str | None = None
    recipe: Path | None = None


def run_merge(request: MergeRequest) -> dict[str, Any]:
    """Merge, verify and write OUT with its model card, then push it if asked; return the manifest's summary."""
    request.check()
    adapters = [read_adapter(path) for path in request.adapters]
    token_source = next((a.path for a in reversed(adapters) if has_tokenizer(a.path)), request.base)
    tokenizer = load_chat_tokenizer(token_source)
    eot = end_of_turn_token(tokenizer, request.eot_token)
    base_tokenizer = load_tokenizer(request.base)

    model = load_model(request.base, DTYPES[request.merge_dtype], request.device or default_device())
    rows = model.get_input_embeddings().weight.shape[0]
    vocab = target_vocab_size(adapters, rows)
    if vocab != rows:
        print(f"resizing the base embeddings from {rows} to {vocab} rows for the adapters' vocabulary")
        model.resize_token_embeddings(vocab, mean_resizing=False)
    new_tokens = added_tokens(tokenizer, base_tokenizer)
    texts = probe_texts(tokenizer, new_tokens)

    result = merge_chain(model, adapters, tokenizer, texts)
    worst = result.worst
    tolerance = request.tolerance
    if tolerance is None:
        tolerance = default_tolerance(request.merge_dtype, worst.reference_scale)
    print(f"max |logit diff| {worst.max_abs:.3e} (tolerance {tolerance:.3e}, merged in {request.merge_dtype})")
    if not worst.max_abs <= tolerance:
        raise MergeVerificationError(
            f"merged model differs from the unmerged adapters by {worst.max_abs:.3e} in the logits, "
            f"over the tolerance {tolerance:.3e}; nothing was written to {request.out}"
        )

    merged = result.model.to(DTYPES[request.dtype])
    cast_diff = compare_logits(result.reference, probe_logits(merged, tokenizer, texts))
    if request.dtype != request.merge_dtype:
        print(f"saving in {request.dtype} moves the logits by up to {cast_diff.max_abs:.3e} (reported, not checked)")
    merged.generation_config = generation_config_for(merged, request.base, tokenizer, eot)
    summary = {
        "base": request.base,
        "adapters": [
            {"path": str(a.path), "peft_type": a.config.get("peft_type"), "r": a.config.get("r"),
             "lora_alpha": a.config.get("lora_alpha"), "trained_on": a.config.get("base_model_name_or_path"),
             "additive": a.additive}
            for a in adapters
        ],
        "dtype": request.dtype,
        "merge_dtype": request.merge_dtype,
        "tokenizer_from": str(token_source),
        "end_of_turn_token": eot,
        "eos_token_id": merged.generation_config.eos_token_id,
        "vocab_rows": vocab,
        "added_tokens": new_tokens,
        "reference": "stacked-unmerged + stage-wise" if result.chain_diff else "stage-wise unmerged",
        "max_abs_logit_diff": worst.max_abs,
        "tolerance": tolerance,
        "stage_diffs": [d.as_dict() for d in result.stage_diffs],
        "chain_diff": result.chain_diff.as_dict() if result.chain_diff else None,
        "saved_dtype_diff": cast_diff.as_dict(),
    }
    with atomic_directory(request.out, force=request.force) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        summary["processor_files"] = copy_processor_files(request.base, staging)
        write_manifest(
            staging,
            config={"recipe": str(request.recipe) if request.recipe else None, "merge": summary},
            inputs=request.adapters,
            extra={"merge": summary},
        )
        write_card(staging, title=request.card_title)
    print(f"wrote {request.out} (end of turn {eot!r}, eos ids {summary['eos_token_id']}), "
          f"model card {request.out / 'README.md'}")
    request.publish()
    return summary


def request_from_args(args: argparse.Namespace) -> MergeRequest:
    base, adapters, eot = args.base, list(args.adapter or []), args.eot_token
    if args.config is not None:
        if adapters:
            raise CheckpointError("--config names the adapter (its output_dir); do not also pass --adapter")
        recipe = load_recipe(args.config)
        for key in ("adapter", "output_dir", "base_model"):
            if not recipe.get(key) and not (key == "base_model" and base):
                raise RecipeError(f"{args.config}: field '{key}' is missing; nothing to merge")
        base = base or str(recipe["base_model"])
        adapters = [Path(recipe["output_dir"])]
        if eot is None and recipe.get("eot_tokens"):
            eot = str(recipe["eot_tokens"][0])
    if base is None or not adapters:
        raise CheckpointError("give --base and at least one --adapter, or --config RECIPE.yml")
    return MergeRequest(
        base=base, adapters=[Path(a) for a in adapters], out=args.out, dtype=args.dtype,
        merge_dtype=args.merge_dtype, force=args.force, tolerance=args.tolerance, eot_token=eot,
        device=args.device, recipe=args.config, push_to_hub=args.push_to_hub, private=args.private,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="base model directory or hub name (overrides the recipe's base_model)")
    parser.add_argument("--adapter", action="append", type=Path, help="adapter directory; repeat for a chain, in order")
    parser.add_argument("--config", type=Path, help="recipe whose base_model and output_dir (the adapter) to merge")
    parser.add_argument("--out", type=Path, required=True, help="directory for the merged checkpoint")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="dtype of the saved weights")
    parser.add_argument("--merge-dtype", choices=sorted(DTYPES), default="float32",
                        help="dtype the merge and its check run in (default float32)")
    parser.add_argument("--tolerance", type=float,
                        help="max |logit diff| allowed (default scales with --merge-dtype and the logits)")
    parser.add_argument("--eot-token", help="end-of-turn token for generation_config (default: from the template)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_push_args(parser)
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_model_args(args, "base", "adapter")
    run_merge(request_from_args(args))
    return 0
