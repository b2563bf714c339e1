"""A tiny PairRM, the SPPO card's ranker, built offline in the layout llm-blender loads.

`Blender.loadranker(PATH)` (llm-blender 0.0.2) reads PATH/config.json as its RankerConfig
(ranker type, backbone, source and candidate lengths), builds the backbone and its tokenizer
from the config's `model_name` (microsoft/deberta-v3-large for llm-blender/PairRM), adds the
<|source|>, <|candidate1|>, <|candidate2|> and <|candidate|> tokens, and loads
PATH/pytorch_model.bin over the result. The tiny one has that layout: PATH/backbone/ stands
in for DeBERTa-v3-large (a DeBERTa-v2 config with v3's relative attention, at a few thousand
parameters per layer, and a Unigram tokenizer of the DeBERTa-v2 class that already carries
the four tokens), and PATH/pytorch_model.bin holds the weights of llm-blender's own
`DebertaV2PairRM` (the backbone plus the comparison head), random-init from a fixed seed.
The head's weights are drawn wider than DeBERTa's default (0.02), so that the scores of
different responses differ enough for their win rates to move away from 0.5.

    python -m recipekit.testing.tiny_pairrm          # prints PATH
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from recipekit.dataio.atomic import atomic_directory
from recipekit.paths import cache_dir
from recipekit.testing import cached_build
from recipekit.testing.tiny_models import _corpus

BUILDER_VERSION = 1
SEED = 1234
VOCAB_SIZE = 600
# The prefix tokens llm-blender's CrossCompareCollator adds to the backbone's tokenizer.
PREFIX_TOKENS = {"source_prefix_id": "<|source|>", "cand1_prefix_id": "<|candidate1|>",
                 "cand2_prefix_id": "<|candidate2|>", "cand_prefix_id": "<|candidate|>"}
# DeBERTa-v3's attention (relative positions, log buckets, shared keys), scaled down.
BACKBONE = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    max_position_embeddings=512, relative_attention=True, max_relative_positions=-1, position_buckets=32,
    pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
    type_vocab_size=0, layer_norm_eps=1e-7, hidden_act="gelu", initializer_range=0.2,
)
# llm-blender/PairRM's RankerConfig: a pair ranker over a DeBERTa backbone, 1224 source and
# 412 candidate tokens, one comparison logit.
RANKER = dict(ranker_type="pairranker", model_type="deberta", source_maxlength=1224, candidate_maxlength=412,
              n_tasks=1, drop_out=0.05)


def _build_tokenizer():
    """DeBERTa-v3's tokenizer class: a Unigram model over pieces with Metaspace word starts. The
    pieces come from tokenizers' BPE trainer, which is deterministic (its Unigram trainer is not:
    its parallel sums vary in the last digits), and all score alike, so a text splits into the
    fewest pieces the vocabulary has."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import DebertaV2Tokenizer

    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]  # DeBERTa-v3's first ids
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials,
                                                                   show_progress=False))
    pieces = sorted(bpe.get_vocab().items(), key=lambda item: item[1])
    vocab = [(piece, 0.0 if piece in specials else -1.0) for piece, _ in pieces]
    tokenizer = DebertaV2Tokenizer(vocab=[*vocab, ("[MASK]", 0.0)])  # DeBERTa-v3 puts [MASK] last
    tokenizer.add_tokens(list(PREFIX_TOKENS.values()))  # as llm-blender's collator does: plain added tokens
    return tokenizer


def _build_pairrm(tokenizer):
    import torch
    from transformers import DebertaV2Config

    from recipekit.sppo.rankers import import_llm_blender

    import_llm_blender()
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM

    torch.manual_seed(SEED)
    config = DebertaV2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **BACKBONE,
                             sep_token_id=tokenizer.sep_token_id, n_tasks=RANKER["n_tasks"],
                             drop_out=RANKER["drop_out"],
                             **{name: tokenizer.convert_tokens_to_ids(token) for name, token in PREFIX_TOKENS.items()})
    return DebertaV2PairRM(config).eval()


def _spec() -> dict:
    return dict(builder=BUILDER_VERSION, seed=SEED, vocab=VOCAB_SIZE, backbone=BACKBONE, ranker=RANKER,
                prefixes=PREFIX_TOKENS, llm_blender=metadata.version("llm-blender"),
                corpus_sha=hashlib.sha256("\n".join(_corpus()).encode()).hexdigest())


def tiny_pairrm_path() -> Path:
    """The directory `Blender.loadranker` loads the tiny PairRM from, building it first if the cache lacks it."""
    spec = _spec()
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return cached_build(cache_dir() / "tiny_models" / f"pairrm-{key}", lambda target: _build(target, spec))


def _build(target: Path, spec: dict) -> None:
    import torch

    from recipekit.sppo.rankers import import_llm_blender

    tokenizer = _build_tokenizer()
    model = _build_pairrm(tokenizer)
    ranker_config = import_llm_blender().RankerConfig(model_name=str(target / "backbone"), **RANKER)
    with atomic_directory(target) as staging:
        model.pretrained_model.save_pretrained(staging / "backbone")
        tokenizer.save_pretrained(staging / "backbone")
        torch.save(model.state_dict(), staging / "pytorch_model.bin")
        (staging / "config.json").write_text(json.dumps(ranker_config.to_dict(), indent=2) + "\n", encoding="utf-8")
        (staging / "tiny_model_spec.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    print(tiny_pairrm_path())
