"""Export a merged checkpoint as a bitsandbytes NF4 4-bit checkpoint.

    python merge/quantize_4bit.py --model MERGED --out MERGED-nf4

The linear layers are quantised to NF4 with double quantisation and bfloat16 compute
(`BitsAndBytesConfig`); the result is saved with `save_pretrained`, so
`from_pretrained(OUT)` loads it already quantised. The command reports the weights' size
on disk before and after and the logit drift against the unquantised model on the probe
prompts, then reloads OUT and checks that it computes what the in-memory model did. A
multimodal model's processor files are copied over unchanged.
bitsandbytes 0.50 quantises on CPU as well as on CUDA; where a build cannot, the command
stops with bitsandbytes' reason and says that a CUDA GPU is needed.

OUT also gets a README.md model card (recipekit/reporting/model_card.py); --push-to-hub REPO
[--private] uploads the finished, verified directory with it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recipekit.checkpoints.hub import ExportRequest, add_push_args
from recipekit.checkpoints.load import (
    CheckpointError,
    copy_processor_files,
    default_device,
    human_size,
    load_chat_tokenizer,
    load_model,
    weights_size,
)
from recipekit.checkpoints.model_path import check_model_args
from recipekit.checkpoints.probes import compare_logits, probe_logits, probe_texts
from recipekit.cli import command
from recipekit.dataio.atomic import atomic_directory
from recipekit.reporting.manifest import write_manifest
from recipekit.reporting.model_card import write_card

# A reloaded checkpoint must compute exactly what was saved; allow float reordering only.
RELOAD_TOLERANCE = 1e-5


class QuantizeError(CheckpointError):
    """bitsandbytes could not produce or reload the 4-bit checkpoint."""


def nf4_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def count_4bit_layers(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def load_4bit(path: str | Path, device: str, **kwargs):
    """Load `path` quantised to 4 bits on `device`, or fail saying why and what is needed."""
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise QuantizeError(f"bitsandbytes is not installed ({err}); 4-bit export needs it") from err
    try:
        model = load_model(path, None, device, **kwargs)
    except (RuntimeError, NotImplementedError, ValueError, ImportError) as err:
        raise QuantizeError(
            f"bitsandbytes {bnb.__version__} could not quantise {path} to 4 bits on {device}: {err}. "
            f"NF4 export needs a CUDA GPU when this bitsandbytes build has no {device} backend."
        ) from err
    if count_4bit_layers(model) == 0:
        raise QuantizeError(
            f"bitsandbytes {bnb.__version__} left every linear layer of {path} unquantised on {device}; "
            f"NF4 export needs a CUDA GPU when this bitsandbytes build has no {device} backend."
        )
    return model


@dataclass(kw_only=True)
class QuantizeRequest(ExportRequest):
    model: Path
    max_drift: float | None = None


def run_quantize(request: QuantizeRequest) -> dict[str, Any]:
    request.check()
    device = request.device or default_device()
    tokenizer = load_chat_tokenizer(request.model)
    texts = probe_texts(tokenizer)

    full = load_model(request.model, None, device)
    reference = probe_logits(full, tokenizer, texts)
    full_dtype = str(next(full.parameters()).dtype).removeprefix("torch.")
    del full

    quantized = load_4bit(request.model, device, quantization_config=nf4_config())
    layers = count_4bit_layers(quantized)
    before = weights_size(request.model)
    with atomic_directory(request.out, force=request.force) as staging:
        # Save before the first forward pass: on CPUs with AVX512-BF16, bitsandbytes repacks the
        # weights for its fused kernel on the first inference call, casting the scales to bfloat16,
        # and re-quantizes those scales when saving, so a model saved after a forward pass is
        # not the NF4 quantisation of its source any more.
        quantized.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        processor_files = copy_processor_files(request.model, staging)
        quantized_logits = probe_logits(quantized, tokenizer, texts)
        drift = compare_logits(reference, quantized_logits)
        print(f"{layers} linear layers in NF4; logit drift vs the {full_dtype} model: max {drift.max_abs:.3e}, "
              f"mean {drift.mean_abs:.3e}, top-1 agreement {drift.top1_agreement:.1%}")
        if request.max_drift is not None and not drift.max_abs <= request.max_drift:
            raise QuantizeError(f"4-bit logits drift by {drift.max_abs:.3e}, over --max-drift {request.max_drift:.3e}")
        reloaded = load_4bit(staging, device)
        reload_diff = compare_logits(quantized_logits, probe_logits(reloaded, tokenizer, texts))
        if not reload_diff.max_abs <= RELOAD_TOLERANCE:
            raise QuantizeError(
                f"the saved 4-bit checkpoint reloads with logits {reload_diff.max_abs:.3e} away from the "
                f"model that was saved; nothing was written to {request.out}"
            )
        after = weights_size(staging)
        summary = {
            "source": str(request.model),
            "source_dtype": full_dtype,
            "device": device,
            "quantization": nf4_config().to_dict(),
            "linear_4bit_layers": layers,
            "weights_bytes_before": before,
            "weights_bytes_after": after,
            "size_ratio": after / before,
            "drift": drift.as_dict(),
            "reload_max_abs_logit_diff": reload_diff.max_abs,
            "processor_files": processor_files,
        }
        write_manifest(staging, config={"quantize": summary}, inputs=[request.model], extra={"quantize": summary})
        write_card(staging, title=request.card_title)
    print(f"weights {human_size(before)} -> {human_size(after)} ({after / before:.1%}); wrote {request.out}, "
          f"model card {request.out / 'README.md'}")
    request.publish()
    return summary


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="merged checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for the 4-bit checkpoint")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--max-drift", type=float, help="fail if the max |logit diff| to the original exceeds this")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_push_args(parser)
    args = parser.parse_args(argv)
    check_model_args(args, "model")
    run_quantize(QuantizeRequest(model=args.model, out=args.out, force=args.force, device=args.device,
                                 max_drift=args.max_drift, push_to_hub=args.push_to_hub, private=args.private))
    return 0
