"""Axolotl's DPO trainer with the paper's SPPO loss, for `axolotl train` via `trainer_cls`.

A recipe selects it with

    rl: dpo
    trainer_cls: recipekit.sppo.trainer.SPPOTrainer
    dpo_loss_type: [sppo]        # the paper's loss; [sppo_hard] or any TRL loss also works
    rl_beta: 0.001               # eta = 1 / beta

Rows come from `dataset_prep/sppo_pairs.py` (chosen/rejected message lists plus the
win-rate columns) through Axolotl's `chat_template.argilla_chat` strategy, which keeps
every column it does not rewrite. TRL's collator drops unknown columns, so the collator is
wrapped to carry the win rates into each batch. The reference model is the one Axolotl
loads from `base_model`, i.e. the policy this iteration starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from axolotl.core.trainers.dpo.trainer import AxolotlDPOTrainer
from trl.trainer.utils import selective_log_softmax

from recipekit.sppo.loss import sppo_loss
from recipekit.sppo.pairs import PROB_COLUMNS

SPPO_LOSS = "sppo"
WIN_RATE_COLUMNS = ("chosen_probs_win", "chosen_probs_lose")


class WinRateCollator:
    """Wraps a preference collator and adds the win-rate columns as float tensors."""

    def __init__(self, base: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        for column in PROB_COLUMNS:
            if column in examples[0]:
                batch[column] = torch.tensor([float(e[column]) for e in examples], dtype=torch.float32)
        return batch


def summed_completion_logps(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor):
    """log p(completion | prompt) per sequence: next-token log-probs summed over completion tokens."""
    per_token = selective_log_softmax(logits[..., :-1, :], input_ids[..., 1:])
    return (per_token.float() * completion_mask[..., 1:]).sum(dim=1)


def drop_repeated_bos(example: dict[str, list[int]], bos_token_id: int) -> dict[str, list[int]]:
    """The chat template writes BOS and the tokenizer adds another; keep one, as at inference."""
    prompt_ids = example["prompt_ids"]
    if len(prompt_ids) >= 2 and prompt_ids[0] == prompt_ids[1] == bos_token_id:
        return {"prompt_ids": prompt_ids[1:]}
    return {"prompt_ids": prompt_ids}


def _check_soft_loss_settings(args) -> None:
    problems = []
    if list(args.loss_type) != [SPPO_LOSS]:
        problems.append(f"it must be the only loss type, got {list(args.loss_type)}")
    if args.ld_alpha is not None:
        problems.append("ld_alpha is not supported")
    if args.use_weighting:
        problems.append("dpo_use_weighting is not supported")
    if args.use_liger_kernel:
        problems.append("dpo_use_liger_kernel is not supported")
    if args.f_divergence_type != "reverse_kl":
        problems.append(f"f_divergence_type must be reverse_kl, got {args.f_divergence_type}")
    if problems:
        raise ValueError(f"dpo_loss_type '{SPPO_LOSS}': " + "; ".join(problems))


def _check_win_rate_columns(dataset, split: str) -> None:
    missing = [c for c in WIN_RATE_COLUMNS if c not in (dataset.column_names or [])]
    if missing:
        raise ValueError(
            f"the '{SPPO_LOSS}' loss needs the columns {list(WIN_RATE_COLUMNS)} in the {split} data, missing "
            f"{missing}; build the pairs with `python dataset_prep/sppo_pairs.py`"
        )


class SPPOTrainer(AxolotlDPOTrainer):
    """AxolotlDPOTrainer + the soft SPPO loss (`dpo_loss_type: [sppo]`); other loss types go to TRL."""

    tag_names = ["axolotl", "sppo"]

    def __init__(self, model, ref_model=None, args=None, *rest, **kwargs):
        self.soft_sppo = args is not None and SPPO_LOSS in args.loss_type
        if self.soft_sppo:
            _check_soft_loss_settings(args)
        super().__init__(model, ref_model, args, *rest, **kwargs)
        if self.soft_sppo:
            _check_win_rate_columns(self.train_dataset, "train")
            for name, dataset in self._eval_datasets().items():
                _check_win_rate_columns(dataset, name)
        self.data_collator = WinRateCollator(self.data_collator)

    def _eval_datasets(self) -> dict[str, Any]:
        if self.eval_dataset is None:
            return {}
        if isinstance(self.eval_dataset, dict):
            return dict(self.eval_dataset)
        return {"eval": self.eval_dataset}

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        bos_token_id = self._tokenizer.bos_token_id
        if bos_token_id is None:
            return dataset
        return dataset.map(drop_repeated_bos, fn_kwargs={"bos_token_id": bos_token_id})

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, *PROB_COLUMNS]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The win rates never reach the model; TRL's losses (sppo_hard, ...) do not use them.
        win_rates = {k: inputs[k] for k in PROB_COLUMNS if k in inputs}
        inputs = {k: v for k, v in inputs.items() if k not in PROB_COLUMNS}
        if not self.soft_sppo:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self._compute_sppo_loss(model, inputs, win_rates, return_outputs)

    def _compute_sppo_loss(self, model, inputs, win_rates, return_outputs):
        not_model_inputs = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")
        model_kwargs = {k: v for k, v in inputs.items() if k not in not_model_inputs}
        outputs = model(**model_kwargs, use_cache=False)
        logps = summed_completion_logps(outputs.logits, inputs["input_ids"], inputs["completion_mask"])
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)  # TRL's batches are [chosen..., rejected...]
        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else model  # PEFT: adapters switched off
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(reference, inputs)
        chosen_logratios = chosen_logps - ref_chosen_logps.float()
        rejected_logratios = rejected_logps - ref_rejected_logps.float()

        eta = 1.0 / self.beta
        win, lose = win_rates["chosen_probs_win"], win_rates["chosen_probs_lose"]
        loss = sppo_loss(chosen_logratios, rejected_logratios, win, lose, eta).mean() * self.loss_weights[0]

        self._log_sppo_metrics(inputs, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios, win, lose)
        return (loss, outputs) if return_outputs else loss

    def _log_sppo_metrics(self, inputs, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios, win, lose):
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]

        def mean(values: torch.Tensor) -> float:
            return self.accelerator.gather_for_metrics(values.detach()).float().mean().item()

        if mode == "train":
            self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        metrics["num_tokens"] = [self._total_train_tokens]
        # The same names TRL logs, so dashboards compare SPPO and DPO runs directly.
        chosen_rewards, rejected_rewards = self.beta * chosen_logratios, self.beta * rejected_logratios
        metrics["rewards/chosen"].append(mean(chosen_rewards))
        metrics["rewards/rejected"].append(mean(rejected_rewards))
        metrics["rewards/accuracies"].append(mean((chosen_rewards > rejected_rewards).float()))
        metrics["rewards/margins"].append(mean(chosen_rewards - rejected_rewards))
        metrics["logps/chosen"].append(mean(chosen_logps))
        metrics["logps/rejected"].append(mean(rejected_logps))
        # What the loss regresses onto, so a run shows how far the log-ratios are from it.
        metrics["sppo/target_chosen"].append(mean((win - 0.5) / self.beta))
        metrics["sppo/target_rejected"].append(mean((lose - 0.5) / self.beta))
        metrics["sppo/logratio_chosen"].append(mean(chosen_logratios))
        metrics["sppo/logratio_rejected"].append(mean(rejected_logratios))
