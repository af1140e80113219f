"""Augmentation (nas/train/augment.py) and the chance level that marks a `no_signal` candidate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memory_models.errors import InputError
from nas.train.augment import Augment, beta, mix, perturb
from nas.train.metrics import chance_level


def _signal(n=8):
    t = torch.linspace(0, 6.28, 100)
    return torch.stack([torch.stack([torch.sin(t * (i + 1)), torch.cos(t), t / 6.28]) for i in range(n)])


def test_perturb_is_seeded_and_touches_only_the_chosen_kinds():
    x = _signal()
    aug = Augment(jitter=0.1, scale=0.2, shift=0.1)
    a = perturb(x, aug, torch.Generator().manual_seed(3))
    b = perturb(x, aug, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.shape == x.shape
    img = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    assert torch.equal(perturb(img, aug, torch.Generator().manual_seed(0)), img)  # signals only
    shifted = perturb(img, Augment(shift=0.25, apply_to=("images",)), torch.Generator().manual_seed(1))
    assert sorted(shifted.flatten().tolist()) == sorted(img.flatten().tolist())  # a roll moves, keeps


def test_jitter_and_scale_have_the_asked_size():
    x = torch.zeros(4000, 3, 50)
    noise = perturb(x, Augment(jitter=0.05), torch.Generator().manual_seed(0))
    assert abs(noise.std().item() - 0.05) < 0.002
    ones = perturb(torch.ones(4000, 3, 5), Augment(scale=0.2), torch.Generator().manual_seed(0))
    assert abs(ones[:, :, 0].std().item() - 0.2) < 0.01 and torch.all(ones == ones[:, :, :1])


def test_mixup_lambda_is_beta_distributed_and_the_first_sample_dominates():
    g = torch.Generator().manual_seed(0)
    draws = np.array([beta(0.4, g) for _ in range(20000)])
    assert abs(draws.mean() - 0.5) < 0.01 and abs(draws.var() - 1 / (4 * 1.8)) < 0.005
    perm, lam = mix(16, 0.4, g)
    assert sorted(perm.tolist()) == list(range(16)) and 0.5 <= lam <= 1


@pytest.mark.parametrize("field,value", [("jitter", -0.1), ("mixup", float("nan")), ("shift", 0.7)])
def test_bad_amounts_are_refused(field, value):
    with pytest.raises(InputError, match=f"training.augment.{field}"):
        Augment(**{field: value}).validate()


def test_chance_level_is_the_best_constant_answer():
    y = np.array([0, 0, 0, 1, 2, 2, 3, 3])
    assert chance_level(y, 4, "accuracy") == 3 / 8
    assert chance_level(y, 4, "balanced_accuracy") == 0.25
    assert chance_level(np.array([0, 1, 1, 1]), 2, "roc_auc") == 0.5
