"""The SPPO objective of arXiv 2405.00675 (eq. 4.7), with soft win rates.

For a pair (y_w, y_l) of one prompt, with r(y) = log pi(y|x) - log pi_ref(y|x) summed over
the response's tokens, the policy is pushed so that each log-ratio equals eta times how
much better than even the response fares against the whole sampled set:

    loss = (r(y_w) - eta * (P_win - 1/2))^2 / 2 + (r(y_l) - eta * (P_lose - 1/2))^2 / 2

TRL's `sppo_hard` is the special case P_win = 1, P_lose = 0, without the halving.
"""

from __future__ import annotations

import torch


def sppo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_probs_win: torch.Tensor,
    chosen_probs_lose: torch.Tensor,
    eta: float,
) -> torch.Tensor:
    """Per-pair SPPO loss; all inputs have one entry per pair."""
    chosen_target = eta * (chosen_probs_win - 0.5)
    rejected_target = eta * (chosen_probs_lose - 0.5)
    return ((chosen_logratios - chosen_target) ** 2 + (rejected_logratios - rejected_target) ** 2) / 2
