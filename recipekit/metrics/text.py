"""Text metrics between generated outputs and references, from the reference libraries.

chrF and BLEU-4 are sacrebleu corpus scores (0-100), with the BLEU tokenizer selectable
and its signature kept. ROUGE-L is rouge-score's LCS F-measure (0-1) with a tokenizer
that keeps Hangul, kana, Han and other non-Latin scripts: rouge-score's default
tokenizer drops every non-ASCII character, so on Korean text it silently scores only the
Latin/JSON fragments. That default is still reported as `rouge_l_ascii` for comparison
with published numbers. BERTScore-F1 and SBERT cosine need an encoder model given by
path; when it cannot be loaded the metric is None and the reason is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Sequence

# One token per CJK ideograph/kana (those scripts do not separate words by spaces),
# and runs of any other letters or digits, Hangul included.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class UnicodeTokenizer:
    """rouge-score tokenizer interface: lower-cased word tokens in any script."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


@dataclass
class TextScores:
    values: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def chrf(outputs: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return metric.corpus_score(list(outputs), [list(references)]).score, str(metric.get_signature())


def bleu4(outputs: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> tuple[float, str]:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize, max_ngram_order=4)
    return metric.corpus_score(list(outputs), [list(references)]).score, str(metric.get_signature())


def rouge_l(outputs: Sequence[str], references: Sequence[str], unicode_aware: bool = True) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer() if unicode_aware else None)
    return fmean(scorer.score(ref, out)["rougeL"].fmeasure for out, ref in zip(outputs, references))


def bertscore_f1(outputs: Sequence[str], references: Sequence[str], model_path: str, num_layers: int | None,
                 batch_size: int = 32) -> float:
    from bert_score import score
    from transformers import AutoConfig

    layers = num_layers or AutoConfig.from_pretrained(model_path).num_hidden_layers
    # bert-score gives an empty text a score of 0, but its code path for empty texts fails with
    # transformers 5 tokenizers; so empty pairs are scored 0 here and the rest by bert-score.
    kept = [i for i, (out, ref) in enumerate(zip(outputs, references)) if out.strip() and ref.strip()]
    if not kept:
        return 0.0
    _, _, f1 = score([outputs[i] for i in kept], [references[i] for i in kept], model_type=model_path,
                     num_layers=layers, batch_size=batch_size, verbose=False)
    return float(f1.sum()) / len(outputs)


def sbert_cosine(outputs: Sequence[str], references: Sequence[str], model_path: str, batch_size: int = 32) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path)
    a = model.encode(list(outputs), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    b = model.encode(list(references), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    return float((a * b).sum(dim=-1).mean())


def text_scores(outputs: Sequence[str], references: Sequence[str], *, bleu_tokenize: str = "13a",
                bertscore_model: str | None = None, bertscore_layers: int | None = None,
                sbert_model: str | None = None) -> TextScores:
    scores = TextScores()
    if not outputs:
        return scores
    scores.values["chrf"], scores.values["chrf_signature"] = chrf(outputs, references)
    scores.values["bleu4"], scores.values["bleu_signature"] = bleu4(outputs, references, bleu_tokenize)
    scores.values["rouge_l"] = rouge_l(outputs, references, unicode_aware=True)
    scores.values["rouge_l_ascii"] = rouge_l(outputs, references, unicode_aware=False)
    for name, model_path, compute in (
        ("bertscore_f1", bertscore_model, lambda p: bertscore_f1(outputs, references, p, bertscore_layers)),
        ("sbert_cos", sbert_model, lambda p: sbert_cosine(outputs, references, p)),
    ):
        if not model_path:
            scores.values[name] = None
            scores.unavailable[name] = "no model given (pass its path by flag)"
            continue
        try:
            scores.values[name] = compute(model_path)
        except Exception as err:  # missing or unloadable model: report, never a silent 0
            scores.values[name] = None
            scores.unavailable[name] = f"{model_path}: {type(err).__name__}: {err}"
    return scores
