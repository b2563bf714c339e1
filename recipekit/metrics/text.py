"""Text metrics between generated outputs and references, from the reference libraries.

chrF and BLEU-4 are sacrebleu corpus scores (0-100), with the BLEU tokenizer selectable
and its signature kept. ROUGE-L is rouge-score's LCS F-measure (0-1), twice:
`rouge_l_ascii` with rouge-score's default tokenizer, which drops every non-ASCII
character (on Korean text it scores only the Latin/JSON fragments) and is what published
numbers such as the supervisor card's 0.881 used; `rouge_l` with a tokenizer that keeps
Hangul, kana, Han and other non-Latin scripts. BERTScore-F1 and SBERT cosine need an
encoder model given by path; when it cannot be loaded the metric is None and the reason
is recorded. BERTScore reads one hidden layer of its encoder, stored as `bertscore_layer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Sequence

from recipekit.errors import RecipekitError

# One token per CJK ideograph/kana (those scripts do not separate words by spaces),
# and runs of any other letters or digits, Hangul included.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class UnicodeTokenizer:
    """rouge-score tokenizer interface: lower-cased word tokens in any script."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


class MetricArgumentError(RecipekitError, ValueError):
    """A metric option that cannot apply to the model it is given (a bad --bertscore-layer)."""


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


def resolve_bertscore_layer(model_path: str, requested: int | None) -> int:
    """The hidden layer BERTScore reads (bert-score's `num_layers`).

    `requested` if given, else bert-score's recommendation for the model
    (bert_score.utils.model2layers, keyed by hub name), else the model's last layer:
    bert-score itself has no default for a model it does not list, such as a local path.
    """
    from bert_score.utils import model2layers
    from transformers import AutoConfig

    available = AutoConfig.from_pretrained(model_path).num_hidden_layers
    layer = requested if requested is not None else model2layers.get(model_path, available)
    if not 0 <= layer <= available:  # 0 is the embeddings, as in bert-score
        raise MetricArgumentError(f"--bertscore-layer {layer}: {model_path} has layers 0 to {available}")
    return layer


def bertscore_f1(outputs: Sequence[str], references: Sequence[str], model_path: str, layer: int,
                 batch_size: int = 32) -> float:
    from bert_score import score

    # bert-score gives an empty text a score of 0, but its code path for empty texts fails with
    # transformers 5 tokenizers; so empty pairs are scored 0 here and the rest by bert-score.
    kept = [i for i, (out, ref) in enumerate(zip(outputs, references)) if out.strip() and ref.strip()]
    if not kept:
        return 0.0
    _, _, f1 = score([outputs[i] for i in kept], [references[i] for i in kept], model_type=model_path,
                     num_layers=layer, batch_size=batch_size, verbose=False)
    return float(f1.sum()) / len(outputs)


def bertscore_label(runs: Sequence[dict[str, Any]]) -> str:
    """The BERTScore row label of a table of runs, naming the layer each scored run read."""
    layers = [m.get("bertscore_layer", "not recorded") if m.get("bertscore_f1") is not None else None for m in runs]
    distinct = list(dict.fromkeys(x for x in layers if x is not None))
    if not distinct:
        return "BERTScore-F1"
    if len(distinct) == 1:
        return f"BERTScore-F1 (layer {distinct[0]})"
    return "BERTScore-F1 (layers " + " / ".join("n/a" if x is None else str(x) for x in layers) + ")"


def sbert_cosine(outputs: Sequence[str], references: Sequence[str], model_path: str, batch_size: int = 32) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path)
    a = model.encode(list(outputs), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    b = model.encode(list(references), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    return float((a * b).sum(dim=-1).mean())


def text_scores(outputs: Sequence[str], references: Sequence[str], *, bleu_tokenize: str = "13a",
                bertscore_model: str | None = None, bertscore_layer: int | None = None,
                sbert_model: str | None = None) -> TextScores:
    scores = TextScores()
    if not outputs:
        return scores
    scores.values["chrf"], scores.values["chrf_signature"] = chrf(outputs, references)
    scores.values["bleu4"], scores.values["bleu_signature"] = bleu4(outputs, references, bleu_tokenize)
    scores.values["rouge_l_ascii"] = rouge_l(outputs, references, unicode_aware=False)
    scores.values["rouge_l"] = rouge_l(outputs, references, unicode_aware=True)
    scores.values["bertscore_layer"] = None

    def bertscore(path: str) -> float:
        scores.values["bertscore_layer"] = resolve_bertscore_layer(path, bertscore_layer)
        return bertscore_f1(outputs, references, path, scores.values["bertscore_layer"])

    for name, model_path, compute in (
        ("bertscore_f1", bertscore_model, bertscore),
        ("sbert_cos", sbert_model, lambda p: sbert_cosine(outputs, references, p)),
    ):
        if not model_path:
            scores.values[name] = None
            scores.unavailable[name] = "no model given (pass its path by flag)"
            continue
        try:
            scores.values[name] = compute(model_path)
        except MetricArgumentError:
            raise
        except Exception as err:  # missing or unloadable model: report, never a silent 0
            scores.values[name] = None
            scores.unavailable[name] = f"{model_path}: {type(err).__name__}: {err}"
    return scores
