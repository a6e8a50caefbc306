"""Shadow models and the per-example privacy report (U-LiRA, competition score, comparator).

Per-example attacks need many models (Hayes et al. 2024). For a task and a method:

* **shadow retrains**: ``N`` models trained with the task's recipe on the retain set
  (seeds derived from ``seed``): they never saw the forget set. They do not depend on the
  method, so :func:`shadow_retrains` builds them once per (task, forget set, N, seed) and
  keeps them in an optional :class:`~unlearnkit.task.ModelCache`;
* **shadow originals**: ``N`` models trained like the original on the full training set
  (other seeds; DP-SGD when the task's original was), also method-independent and cached
  (:func:`shadow_originals`);
* **shadow unlearns**: each shadow original unlearned by the method (:func:`shadow_unlearns`).

Classifier shadows are trained through :func:`unlearnkit.ensemble.train_many` (DP-SGD
originals through :func:`unlearnkit.dp.train_dp_original`, one at a time) and scored with
:func:`~unlearnkit.modalities.classifier.scores.compute_scores`. A modality with a ``privacy``
part (:func:`privacy_part`; the graph's is :mod:`unlearnkit.modalities.graph.privacy`) trains
and scores its own: ``train_shadows(task, data, seeds, progress)`` and
``shadow_outputs(model, task)`` (the forget rows' ids, labels and logits in the classifier's
form, whose logit-scaled confidence is the modality's membership statistic, and the retain
and test utility), with ``privacy_check(task)`` refusing a forget set it has no statistic
for before anything is trained. Everything else (caching, seeds, U-LiRA, the competition and
comparator scores, cost) is the same code for every modality. Each model is scored once
per split (forget, retain, test); the attacks read the forget set's logit-scaled confidence.

:func:`privacy_report` runs the three evaluations:

* U-LiRA (:func:`~unlearnkit.evaluation.ulira.ulira`): shadow unlearns (in) vs shadow retrains
  (out), every model a held-out target in turn;
* the NeurIPS 2023 competition score (:mod:`~unlearnkit.evaluation.competition`): as in the
  competition, the ``N`` unlearned models are ``N`` runs of the method (seeds derived from
  ``seed``) from the task's *one* original, against the ``N`` shadow retrains;
* the Unlearning Comparator's worst-case privacy score
  (:func:`~unlearnkit.evaluation.comparator.comparator_privacy`): run ``i`` of the method on
  the original against shadow retrain ``i``, averaged over the ``N`` pairs (the paper scores
  one pair; the mean over pairs is the same quantity with less variance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Sequence

import numpy as np
from torch import nn

from ..engines.ensemble import train_many
from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..methods import Method, get_method
from ..modalities.classifier.scores import Scores, compute_scores
from ..task import ModelCache, Task
from ..utils import derive_seed, stable_hash
from .comparator import comparator_privacy
from .competition import competition_score
from .ulira import ulira

#: goal of each key :func:`privacy_report` returns ("higher"/"lower" is better), for reports
PRIVACY_OUTPUTS = {
    "ulira_auc": "lower",
    "ulira_tpr_at_1fpr": "lower",
    "ulira_tpr_at_01fpr": "lower",
    "ulira_acc": "lower",
    "competition_F": "higher",
    "competition_score": "higher",
    "comparator_privacy": "higher",
    "privacy_wall_time_s": "lower",
    "privacy_cost_examples": "lower",
    "privacy_cost_retrains": "lower",
}


@dataclass
class ShadowSet:
    """Scores of ``N`` models of one kind on a task: the forget set's, and retain/test utility
    (accuracy; a modality's ``privacy`` part may give another: a graph link task's edge AUROC).

    ``cost`` is what producing the models cost (as recorded when they were trained, also
    for models read from a cache).
    """

    kind: str
    seeds: list[int]
    forget: list[Scores]
    acc_retain: np.ndarray
    acc_test: np.ndarray
    cost: LoopStats

    def __len__(self) -> int:
        return len(self.forget)

    @property
    def confidence(self) -> np.ndarray:
        """``(N, n_forget)`` logit-scaled confidences (LiRA's statistic)."""
        return np.stack([s.scaled_confidence for s in self.forget])

    @property
    def acc_forget(self) -> np.ndarray:
        return np.array([s.accuracy() for s in self.forget])


def _seeds(seed: int, kind: str, n: int) -> list[int]:
    return [derive_seed(seed, "shadow", kind, i) % (2**31) for i in range(n)]


def _check_n(n: int) -> None:
    if n < 4:
        raise ConfigError(
            f"n_shadow must be at least 4 (got {n}); per-example attacks hold one "
            "model out and need at least 3 on each side"
        )


def _per_model(total: LoopStats, n: int) -> LoopStats:
    return LoopStats(
        round(total.steps / n),
        round(total.examples_forward / n),
        round(total.examples_backward / n),
        total.wall_time_s / n,
        total.final_loss,
    )


Fit = Callable[[list[int]], tuple[list[nn.Module], LoopStats]]


def privacy_part(task: Task) -> ModuleType | None:
    """The task's modality's ``privacy`` part (``<package>.privacy``: ``train_shadows``,
    ``shadow_outputs``, ``privacy_check``), or None where it has none: then shadows are
    trained and scored here as classifiers."""
    info = task.modality_info
    try:
        return info.part("privacy")
    except ModuleNotFoundError as e:
        if e.name != f"{info.package}.privacy":
            raise
        return None


def _fit_many(task: Task, data, progress: bool) -> Fit:
    """Train with the task's recipe: the modality's ``train_shadows``, else all seeds together
    (:func:`train_many`)."""
    part = privacy_part(task)
    if part is not None:
        return lambda seeds: part.train_shadows(task, data, seeds, progress)
    return lambda seeds: train_many(
        task.model_factory, data, task.adapter, task.recipe, seeds, device=task.device, progress=progress
    )


def _fit_dp(task: Task, dp: dict, progress: bool) -> Fit:
    """Train on the full training set with DP-SGD like a DP task's original, one at a time."""
    from ..engines.dp import train_dp_original

    def fit(seeds: list[int]) -> tuple[list[nn.Module], LoopStats]:
        models, total = [], LoopStats()
        for s in seeds:
            m, cost, _ = train_dp_original(
                task.model_factory(s).to(task.device),
                task.train,
                task.adapter,
                task.recipe,
                s,
                dp["epsilon"],
                dp["delta"],
                dp["max_grad_norm"],
                task.device,
                progress,
            )
            models.append(m.eval())
            total = total + cost
        return models, total

    return fit


def _train(
    task: Task, prefix: str, seeds: list[int], cache: ModelCache | None, fit: Fit
) -> tuple[list[nn.Module], LoopStats]:
    """Models for ``seeds``: from ``cache``, or made by ``fit`` (the missing ones), then cached."""
    models: list[nn.Module | None] = [None] * len(seeds)
    cost = LoopStats()
    if cache is not None:
        for i, s in enumerate(seeds):
            m = task.model_factory(s).to(task.device)
            info = cache.get(f"{prefix}-{s}", m)
            if info is not None:
                models[i] = m.eval()
                cost = cost + LoopStats(**info["cost"])
    missing = [i for i, m in enumerate(models) if m is None]
    if missing:
        trained, total = fit([seeds[i] for i in missing])
        per = _per_model(total, len(missing))
        for i, m in zip(missing, trained):
            models[i] = m
            if cache is not None:
                cache.put(f"{prefix}-{seeds[i]}", m, {"cost": per.to_dict()})
        cost = cost + total
    return models, cost  # type: ignore[return-value]


def _outputs(task: Task, model: nn.Module, part: ModuleType | None) -> tuple[Scores, float, float]:
    """One model's forget-set scores and retain / test utility."""
    if part is None:
        return (
            compute_scores(model, task.forget, task.adapter),
            compute_scores(model, task.retain, task.adapter).accuracy(),
            compute_scores(model, task.test, task.adapter).accuracy(),
        )
    o = part.shadow_outputs(model, task)
    return Scores(o["example_ids"], o["labels"], o["logits"]), o["utility_retain"], o["utility_test"]


def _score(task: Task, kind: str, seeds: list[int], models: Sequence[nn.Module], cost: LoopStats) -> ShadowSet:
    forget, ra, ta = [], [], []
    part = privacy_part(task)
    for m in models:
        f, r, t = _outputs(task, m, part)
        forget.append(f)
        ra.append(r)
        ta.append(t)
    return ShadowSet(kind, list(seeds), forget, np.array(ra), np.array(ta), cost)


def shadow_retrains(
    task: Task, n: int = 16, seed: int = 0, cache: ModelCache | None = None, progress: bool = False
) -> ShadowSet:
    """``n`` models trained on the retain set with the task's recipe, scored.

    Cached per model under ``shadow-retrain-<data/model/recipe key>-<forget fingerprint>-<model
    seed>``; the key leaves out how the original was trained (a DP original shares the plain
    task's retrains: the reference is always the ordinary retrain).
    """
    seeds = _seeds(seed, "retrain", n)
    key = stable_hash({k: v for k, v in task.spec.items() if k not in ("scenario", "dp")})
    models, cost = _train(
        task,
        f"shadow-retrain-{key}-{task.split.forget_fingerprint}",
        seeds,
        cache,
        _fit_many(task, task.retain, progress),
    )
    return _score(task, "retrain", seeds, models, cost)


def shadow_originals(
    task: Task, n: int = 16, seed: int = 0, cache: ModelCache | None = None, progress: bool = False
) -> tuple[list[nn.Module], LoopStats]:
    """``n`` models trained like the original on the full training set (other seeds than the
    retrains), with DP-SGD when the task's original was (``task.spec["dp"]``); cached per model
    under ``shadow-original-<task key>-<model seed>`` (they do not depend on the forget set).
    Returns the models and their cost."""
    dp = task.spec.get("dp")
    fit = _fit_dp(task, dp, progress) if dp else _fit_many(task, task.train, progress)
    return _train(task, f"shadow-original-{task.key}", _seeds(seed, "original", n), cache, fit)


def shadow_unlearns(
    task: Task, method: Method, originals: Sequence[nn.Module], seed: int = 0, progress: bool = False
) -> ShadowSet:
    """Each model of ``originals`` unlearned by ``method`` (the task with that model as its
    original; run ``i`` seeded from ``seed`` and ``i``; :meth:`Method.unlearn_many`, which
    fine-tuning runs as one vectorised ensemble), scored."""
    seeds = _seeds(seed, f"unlearn-{method.name}", len(originals))
    models, cost = method.unlearn_many(task, originals, seeds, progress=progress)
    return _score(task, f"unlearn:{method.name}", seeds, models, cost)


def _examples(c: LoopStats) -> int:
    return c.examples_forward + c.examples_backward


def privacy_report(
    task: Task,
    method: str | Method,
    params: dict | None = None,
    n_shadow: int = 16,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Per-example privacy of ``method`` on ``task`` from ``n_shadow`` models of each kind:
    the aggregates of :func:`privacy_evaluation` (see there)."""
    return privacy_evaluation(task, method, params, n_shadow, seed, cache, progress)[0]


def privacy_evaluation(
    task: Task,
    method: str | Method,
    params: dict | None = None,
    n_shadow: int = 16,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, list]]:
    """Per-example privacy of ``method`` on ``task`` from ``n_shadow`` models of each kind:
    ``(aggregates, per_example)``.

    Trains (or reads from ``cache``) ``n_shadow`` shadow retrains and shadow originals, unlearns
    every shadow original with the method, and runs the method ``n_shadow`` times from the
    task's original. Returns (see :data:`PRIVACY_OUTPUTS` for the goals):

    * ``ulira_auc``, ``ulira_tpr_at_1fpr``, ``ulira_tpr_at_01fpr``, ``ulira_acc``: U-LiRA,
      shadow unlearns vs shadow retrains (0.5 / 0 / 0 / 0.5 is perfect unlearning);
    * ``competition_F``, ``competition_score``: the NeurIPS 2023 competition's forgetting
      score and its utility-adjusted score (1 is the ideal, but finite samples show some
      epsilon even for identical distributions: the retrain method itself scores about 0.13
      with 16 models on digits, so compare methods with it at the same ``n_shadow``);
    * ``comparator_privacy``: the Unlearning Comparator's worst-case privacy score (1 is perfect);
    * cost: ``privacy_wall_time_s`` (this call, cache hits included), ``privacy_cost_examples``
      (examples through forward and backward passes to produce every model used, cached ones
      at their recorded cost) and ``privacy_cost_retrains`` (the same in units of one retrain);
      ``n_shadow``.

    ``per_example``: U-LiRA per forget example, ``{"ids": [example id], "ulira_acc":
    [balanced accuracy of the rule LLR > 0 on that example, 0.5 = chance], "ulira_auc":
    [AUC over that example's 2N targets]}``, in the forget set's order.
    """
    _check_n(n_shadow)
    t0 = time.perf_counter()
    m = method if isinstance(method, Method) else get_method(method, **(params or {}))
    part = privacy_part(task)
    if part is not None:
        part.privacy_check(task)
    retrains = shadow_retrains(task, n_shadow, seed, cache, progress)
    originals, originals_cost = shadow_originals(task, n_shadow, seed, cache, progress)
    unlearns = shadow_unlearns(task, m, originals, derive_seed(seed, "shadow-unlearns"), progress)
    del originals
    repeats = shadow_unlearns(task, m, [task.original] * n_shadow, derive_seed(seed, "repeats"), progress)

    u = ulira(unlearns.confidence, retrains.confidence)
    c = competition_score(
        repeats.confidence,
        retrains.confidence,
        repeats.acc_retain,
        retrains.acc_retain,
        repeats.acc_test,
        retrains.acc_test,
    )
    comp = np.mean([comparator_privacy(a, b)["privacy"] for a, b in zip(repeats.forget, retrains.forget)])
    examples = sum(_examples(x) for x in (retrains.cost, originals_cost, unlearns.cost, repeats.cost))
    per_retrain = _examples(retrains.cost) / n_shadow
    per_example = {
        "ids": [str(i) for i in retrains.forget[0].example_ids],
        "ulira_acc": [float(v) for v in u["per_example_acc"]],
        "ulira_auc": [float(v) for v in u["per_example_auc"]],
    }
    return {
        "ulira_auc": u["auc"],
        "ulira_tpr_at_1fpr": u["tpr_at_1fpr"],
        "ulira_tpr_at_01fpr": u["tpr_at_01fpr"],
        "ulira_acc": u["acc"],
        "competition_F": c["F"],
        "competition_score": c["score"],
        "comparator_privacy": float(comp),
        "privacy_wall_time_s": time.perf_counter() - t0,
        "privacy_cost_examples": float(examples),
        "privacy_cost_retrains": examples / per_retrain if per_retrain else float("nan"),
        "n_shadow": float(n_shadow),
    }, per_example
