"""The unlearning losses (methods/losses.py) against values computed by hand, plus the
parameter mask and SCRUB's min/max schedule."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.methods.losses import (
    gradient_ascent_loss,
    gradient_difference_loss,
    kl_to_teacher,
    npo_loss,
    random_label_targets,
    saliency_mask,
)
from unlearnkit.methods.scrub import scrub_schedule


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_gradient_ascent_is_negative_mean_loss():
    assert gradient_ascent_loss(t(1.0, 2.0, 3.0)).item() == pytest.approx(-2.0)


def test_gradient_difference_weights_retain_by_alpha_and_forget_by_one_minus_alpha():
    # 0.75 * mean(2, 4) - 0.25 * mean(1, 3) = 2.25 - 0.5
    assert gradient_difference_loss(t(1.0, 3.0), t(2.0, 4.0), alpha=0.75).item() == pytest.approx(1.75)
    # alpha = 0 is pure gradient ascent on the forget set
    assert gradient_difference_loss(t(1.0, 3.0), t(2.0, 4.0), alpha=0.0).item() == pytest.approx(-2.0)


def test_npo_loss_values():
    # p = ref: (2/beta) * log 2
    half = math.log(0.5)
    assert npo_loss(t(half), t(half), beta=0.5).item() == pytest.approx(4 * math.log(2))
    # beta = 1: 2 * mean(log(1 + p/ref)); (p, ref) = (0.5, 0.5) and (0.25, 0.5):
    # (2 log 2 + 2 log 1.5) / 2 = log 3
    loss = npo_loss(t(half, math.log(0.25)), t(half, half), beta=1.0)
    assert loss.item() == pytest.approx(math.log(3))


def test_npo_gradient_is_ascent_weighted_by_probability_ratio():
    # d/d log p of (2/beta) softplus(beta (log p - log ref)) = 2 sigmoid(beta * delta) / n
    log_lik = t(0.0, math.log(0.25)).requires_grad_()
    npo_loss(log_lik, t(0.0, 0.0), beta=1.0).backward()
    assert log_lik.grad.tolist() == pytest.approx([2 * 0.5 / 2, 2 * 0.2 / 2])


def test_kl_to_teacher_values():
    student = torch.zeros(2, 2, dtype=torch.float64)  # uniform
    teacher = t(math.log(3.0), 0.0).repeat(2, 1)  # (0.75, 0.25)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_to_teacher(student, teacher).item() == pytest.approx(kl)
    # batch mean: a second row where student == teacher contributes 0
    teacher2 = torch.stack([teacher[0], torch.zeros(2, dtype=torch.float64)])
    assert kl_to_teacher(student, teacher2).item() == pytest.approx(kl / 2)
    # temperature T softens both sides and scales by T^2
    s3 = math.sqrt(3.0)
    pt = (s3 / (s3 + 1), 1 / (s3 + 1))
    kl_t2 = 4 * sum(p * math.log(p / 0.5) for p in pt)
    assert kl_to_teacher(student, teacher, temperature=2.0).item() == pytest.approx(kl_t2)
    assert kl_to_teacher(teacher, teacher).item() == pytest.approx(0.0)


def test_random_label_targets_are_wrong_uniform_and_seeded():
    labels = torch.tensor([0, 1, 1, 0])
    # two classes: the only wrong label
    assert random_label_targets(labels, 2, torch.Generator().manual_seed(0)).tolist() == [1, 0, 0, 1]
    labels = torch.zeros(3000, dtype=torch.long)
    new = random_label_targets(labels, 3, torch.Generator().manual_seed(0))
    assert (new != 0).all() and set(new.tolist()) == {1, 2}
    assert abs((new == 1).float().mean().item() - 0.5) < 0.05
    again = random_label_targets(labels, 3, torch.Generator().manual_seed(0))
    assert torch.equal(new, again)


def test_saliency_mask_keeps_global_top_fraction():
    grads = {"a": torch.tensor([[0.1, -0.5], [0.2, 0.05]]), "b": torch.tensor([-0.3, 0.0])}
    m = saliency_mask(grads, keep=0.5)  # top 3 of 6 by |g|: 0.5, 0.3, 0.2
    assert m["a"].tolist() == [[False, True], [True, False]] and m["b"].tolist() == [True, False]
    assert all(v.all() for v in saliency_mask(grads, keep=1.0).values())
    # ties at the threshold are all kept; zero gradients are never salient (unless keep = 1)
    assert saliency_mask({"w": torch.ones(4)}, keep=0.5)["w"].all()
    assert saliency_mask({"w": t(0.0, 0.0, 0.0, 2.0)}, keep=0.5)["w"].tolist() == [False] * 3 + [True]
    assert saliency_mask({"w": torch.zeros(3)}, keep=1.0)["w"].all()
    with pytest.raises(ValueError):
        saliency_mask(grads, keep=0.0)


def test_scrub_schedule_max_passes_only_in_first_msteps_epochs():
    assert scrub_schedule(3, 2, forget_batches=2, retain_batches=3) == (
        ["max"] * 2 + ["min"] * 3 + ["max"] * 2 + ["min"] * 3 + ["min"] * 3
    )
    assert scrub_schedule(1.5, 1, 2, 2) == ["max", "max", "min", "min", "min"]
    assert scrub_schedule(2, 0, 5, 1) == ["min", "min"]
