"""Random labels: fine-tune on the forget set relabelled with random wrong labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.dataset import ExampleSet
from ..engines.ensemble import LoopPlan
from ..engines.loop import cross_entropy_objective
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register
from .losses import random_label_targets


@dataclass
class RandomLabelsParams(LoopParams):
    epochs: float = hp(2.0, "passes over the training data (relabelled forget set + retain set)")
    lr: float = hp(1e-3, "learning rate")
    use_retain: bool = hp(True, "mix the retain set into the training data; False: relabelled forget set only")


def relabelled_forget(task, seed: int) -> ExampleSet:
    """The forget set with each label replaced, once per run, by a uniformly drawn wrong label."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "random_labels") % (2**63))
    labels = random_label_targets(task.forget.labels, task.num_classes, gen)
    return task.forget.with_labels(labels, name="forget-relabelled")


def random_label_data(task, seed: int, use_retain: bool) -> ExampleSet:
    """``D_f' ∪ D_r`` (or ``D_f'`` alone): what random-label methods train on."""
    forget = relabelled_forget(task, seed)
    return ExampleSet.concat([forget, task.retain], "relabelled-train") if use_retain else forget


@register
class RandomLabels(Method):
    """Random labels (Golatkar et al. 2020, CVPR, "Eternal Sunshine of the Spotless Net",
    the Random Labels baseline; Graves et al. 2021, AAAI, "Amnesiac Machine Learning"):

    ``min_theta E_{(x, y) in D_f' ∪ D_r} CE(f(x; theta), y)`` from the original weights, where
    ``D_f'`` is the forget set with ``y' ~ Uniform({0..K-1} \\ {y})`` drawn once per example
    (seeded). The two sets are shuffled together, as in Graves et al. and SalUn's RL
    baseline, so each forget example weighs as much as a retain example; with
    ``use_retain=False`` only ``D_f'`` is trained on. Departure: the new label is always
    wrong (some implementations draw from all K classes).
    """

    name = "random_labels"
    Params = RandomLabelsParams
    citation = (
        "Golatkar et al. 2020 (CVPR), Eternal Sunshine of the Spotless Net, random labels; "
        "Graves et al. 2021 (AAAI), Amnesiac Machine Learning"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        return LoopPlan(
            model,
            cross_entropy_objective(task.adapter, "train"),
            {"train": random_label_data(task, seed, p.use_retain)},
            p.train_config(),
            seed,
            desc=self.name,
        )
