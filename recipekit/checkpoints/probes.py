"""Probe prompts and logit comparisons: does a rewritten checkpoint still compute the same function?

The probes are short conversations in the shapes the recipes train on (a supervisor
judgement, a customer-service answer, a Korean/Japanese turn), rendered with the
checkpoint's own chat template so every turn token is exercised. A template with no system
role (Gemma 2) gets the system text at the head of the first user turn, so the probes say the
same to every family. Tokens a fine-tune added to the vocabulary are appended to one probe, so
their embedding rows are compared too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recipekit.templates.chat_format import accepts_system_turn, fold_system_turn, prompt_token_ids, render

PROBE_CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    (
        {"role": "system", "content": "You supervise the answers of a customer-service chatbot."},
        {"role": "user", "content": "[Category] W/M\n[Conversation Transcript] The washer shows error OE."
                                    "\n[Retrieved Document] OE means the drain is blocked."},
        {"role": "assistant", "content": '<think>\nThe answer follows the document.\n</think>\n'
                                         '{"label": "correct", "reason": "matches the document"}'},
    ),
    (
        {"role": "user", "content": "How long is the warranty on my refrigerator?"},
        {"role": "assistant", "content": "The compressor has a ten-year warranty; other parts have one year."},
    ),
    (
        {"role": "user", "content": "세탁기 보증 기간이 어떻게 되나요? 保証期間を教えてください。"},
        {"role": "assistant", "content": "보증 기간은 1년입니다."},
    ),
)


def probe_texts(tokenizer, extra_tokens: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The probe conversations rendered with the tokenizer's chat template."""
    fold = not accepts_system_turn(tokenizer)
    texts = [render(tokenizer, fold_system_turn(conversation) if fold else list(conversation))
             for conversation in PROBE_CONVERSATIONS]
    if extra_tokens:
        texts[0] = texts[0] + " ".join(extra_tokens)
    return texts


@torch.no_grad()
def probe_logits(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    """Float32 CPU logits of each text, one forward pass per text (no padding to mask)."""
    device = next(model.parameters()).device
    outputs = []
    for text in texts:
        ids = torch.tensor([prompt_token_ids(tokenizer, text)], device=device)
        outputs.append(model(input_ids=ids).logits.float().cpu())
    return outputs


@dataclass(frozen=True)
class LogitDiff:
    max_abs: float
    mean_abs: float
    top1_agreement: float  # fraction of positions whose argmax token is the same
    reference_scale: float  # max |logit| of the reference

    def as_dict(self) -> dict[str, float]:
        return {
            "max_abs_logit_diff": self.max_abs,
            "mean_abs_logit_diff": self.mean_abs,
            "top1_agreement": self.top1_agreement,
            "reference_max_abs_logit": self.reference_scale,
        }


def compare_logits(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> LogitDiff:
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference probes but {len(candidate)} candidate probes")
    diffs, agree, positions, scale = [], 0, 0, 0.0
    for ref, got in zip(reference, candidate):
        if ref.shape != got.shape:
            raise ValueError(f"logit shapes differ: reference {tuple(ref.shape)}, candidate {tuple(got.shape)}")
        diffs.append((ref - got).abs().flatten())
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        positions += ref.shape[:-1].numel()
        scale = max(scale, float(ref.abs().max()))
    every = torch.cat(diffs)
    return LogitDiff(float(every.max()), float(every.mean()), agree / positions, scale)
