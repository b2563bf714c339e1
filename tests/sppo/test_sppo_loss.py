"""SPPO: the loss formula by hand, and the trainer against TRL's own `sppo_hard` code."""

from __future__ import annotations

import math

import pytest
import torch

from recipekit.sppo.loss import sppo_loss

# --- the loss formula --------------------------------------------------------------------


def test_sppo_loss_by_hand():
    loss = sppo_loss(
        chosen_logratios=torch.tensor([1.0, -2.0]),
        rejected_logratios=torch.tensor([0.5, 3.0]),
        chosen_probs_win=torch.tensor([0.75, 0.6]),
        chosen_probs_lose=torch.tensor([0.25, 0.5]),
        eta=4.0,
    )
    # pair 1: targets 4*0.25 = 1 and 4*(-0.25) = -1 -> ((1-1)^2 + (0.5+1)^2) / 2 = 1.125
    # pair 2: targets 4*0.1 = 0.4 and 0          -> ((-2-0.4)^2 + 3^2) / 2 = (5.76 + 9) / 2 = 7.38
    assert loss.tolist() == pytest.approx([1.125, 7.38])


# --- the trainer, in process, on the tiny Gemma 2 ----------------------------------------

BETA = 0.5  # eta = 2: log-ratios of a perturbed tiny model and the targets are of similar size
ROWS = [
    ("What is two plus two?", "Four.", "Five, probably."),
    ("Name a primary colour.", "Red is one.", "Potato."),
    ("Say hello in French.", "Bonjour.", "Hola."),
]


def _preference_dataset(win: list[float], lose: list[float]):
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
                "chosen_probs": p_win,
                "chosen_probs_win": p_win,
                "chosen_probs_lose": p_lose,
            }
            for (prompt, good, bad), p_win, p_lose in zip(ROWS, win, lose, strict=True)
        ]
    )


@pytest.fixture(scope="module")
def models(tiny_model):
    """A policy that has drifted from its reference, so the log-ratios are not zero."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model("gemma2")
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return policy, reference, AutoTokenizer.from_pretrained(path)


def _trainer(models, loss_type: str, dataset, tmp_path):
    from axolotl.core.trainers.dpo.args import AxolotlDPOConfig

    from recipekit.sppo.trainer import SPPOTrainer

    policy, reference, tokenizer = models
    args = AxolotlDPOConfig(
        output_dir=str(tmp_path / loss_type),
        loss_type=[loss_type],
        beta=BETA,
        max_length=128,
        per_device_train_batch_size=len(ROWS),
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
    )
    return SPPOTrainer(policy, reference, args=args, train_dataset=dataset, processing_class=tokenizer)


def _loss_on_all_rows(trainer) -> float:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, trainer._prepare_inputs(batch)).item()


def test_hard_probabilities_give_half_of_trls_sppo_hard(models, tmp_path):
    """Win rates 1 and 0 turn the paper's loss into TRL's `sppo_hard`, halved."""
    dataset = _preference_dataset(win=[1.0] * len(ROWS), lose=[0.0] * len(ROWS))
    ours = _loss_on_all_rows(_trainer(models, "sppo", dataset, tmp_path))
    trls = _loss_on_all_rows(_trainer(models, "sppo_hard", dataset, tmp_path))  # TRL's own loss code
    assert math.isfinite(ours) and ours > 0
    assert ours == pytest.approx(trls / 2, rel=1e-5)


def test_soft_probabilities_change_the_loss(models, tmp_path):
    """The soft targets are really read from the rows: the same pairs with other win rates score differently."""
    hard = _loss_on_all_rows(_trainer(models, "sppo", _preference_dataset([1.0] * 3, [0.0] * 3), tmp_path))
    soft = _loss_on_all_rows(_trainer(models, "sppo", _preference_dataset([0.7, 0.6, 0.8], [0.3, 0.45, 0.2]), tmp_path))
    assert soft != pytest.approx(hard, rel=1e-3)


def test_soft_loss_needs_the_win_rate_columns(models, tmp_path):
    dataset = _preference_dataset([0.7] * 3, [0.3] * 3).remove_columns(["chosen_probs_win", "chosen_probs_lose"])
    with pytest.raises(ValueError, match="sppo_pairs.py"):
        _trainer(models, "sppo", dataset, tmp_path)


def test_soft_loss_refuses_to_be_mixed_with_other_losses(models, tmp_path):
    from axolotl.core.trainers.dpo.args import AxolotlDPOConfig

    from recipekit.sppo.trainer import SPPOTrainer

    policy, reference, tokenizer = models
    args = AxolotlDPOConfig(
        output_dir=str(tmp_path / "mixed"), loss_type=["sppo", "sigmoid"], report_to=[], use_cpu=True
    )
    with pytest.raises(ValueError, match="only loss"):
        SPPOTrainer(policy, reference, args=args, train_dataset=_preference_dataset([0.7] * 3, [0.3] * 3),
                    processing_class=tokenizer)


def test_win_rates_survive_axolotl_strategy_tokenisation_and_collation(models, tmp_path):
    """Fixture pairs -> Axolotl's argilla_chat strategy -> TRL tokenising -> our collator."""
    from axolotl.prompt_strategies.dpo import load as load_dpo
    from axolotl.utils.dict import DictDefault
    from datasets import load_dataset
    from trl.data_utils import _tokenize

    from recipekit.sppo.pairs import PROB_COLUMNS
    from recipekit.testing import FIXTURES_DIR

    tokenizer = models[2]
    pairs = load_dataset("json", data_files=str(FIXTURES_DIR / "prepared" / "sppo_iter1_pairs.jsonl"), split="train")
    cfg = DictDefault({"chat_template": "gemma", "datasets": [{"type": "chat_template.argilla_chat"}]})
    transform, map_kwargs = load_dpo("chat_template.argilla_chat", cfg, dataset_idx=0)
    rows = pairs.map(transform, fn_kwargs={"tokenizer": tokenizer}, **map_kwargs)

    trainer = _trainer(models, "sppo", rows, tmp_path)
    tokenised = trainer.train_dataset
    assert set(PROB_COLUMNS) <= set(tokenised.column_names)
    bos = tokenizer.bos_token_id
    assert _tokenize(tokenizer, rows[0]["prompt"])["input_ids"][:2] == [bos, bos]  # what TRL alone would train on
    assert tokenised[0]["prompt_ids"][0] == bos and tokenised[0]["prompt_ids"][1] != bos

    batch = trainer.data_collator([tokenised[i] for i in range(len(tokenised))])
    for column in PROB_COLUMNS:
        assert batch[column].dtype == torch.float32
        assert batch[column].tolist() == pytest.approx(pairs[column])
    assert batch["input_ids"].shape[0] == 2 * len(tokenised)  # chosen rows, then rejected rows
