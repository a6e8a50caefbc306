"""Shadow models of a graph task for the per-example privacy report
(:func:`unlearnkit.evaluation.shadow.privacy_evaluation`, ``unlearnkit evaluate RUN --privacy N``).

:mod:`unlearnkit.evaluation.shadow` asks a modality's ``privacy`` part, where it has one, how
to train ``N`` shadow models and what each one says about the forget rows; this is the
graph's. (Classifiers have no such part: their shadows go through the vectorised
ensemble there.)

* **training**: each shadow is the task's own :meth:`GraphTask.train_from_scratch` on the
  data it is given (the retain graph for shadow retrains, the full training graph for shadow
  originals), one seed after the other: full-graph training does not vectorise the way
  :func:`unlearnkit.engines.ensemble.train_many` stacks MLPs;
* **the statistic** (U-LiRA's ``phi``, Carlini et al. 2022 / Hayes et al. 2024), every model
  read on the task's scoring view (the retain graph, as every graph metric):

  - an *edge* row (link prediction): ``phi = s(u, v) = log sigma(s) - log(1 - sigma(s))``,
    the logit-scaled probability that the pair is an edge, i.e. the decoder's raw score of the
    positive pair alone (the row's fixed negative pair says nothing about the edge's
    membership). It is returned as the two-class logits ``(0, s(u, v))`` with label 1, so
    the classifier's ``log p_y - log(1 - p_y)`` of their softmax is exactly ``s(u, v)``, and
    the comparator's entropy feature at ``T = 2`` is the binary entropy of ``sigma(s / 2)``
    (the attack feature of the comparator's graph view);
  - a *node* row (node classification; a feature row of a labelled node is the same
    prediction and counts once, by its node): the class logits ``z_v`` with the node's label,
    ``phi = log p_y - log(1 - p_y)`` of ``softmax(z_v)``;
  - rows the task does not supervise (an edge on a node task, a node on a link task) have
    no statistic and are left out; a forget set with none is refused (:func:`privacy_check`);

* **utility** (the competition score's RA / TA ratios): node accuracy on the retained and the
  test nodes (node tasks); the AUROC of the retained training edges, and of the test edges
  (GNNDelete's DT AUC), against their fixed negative pairs (link tasks).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ...engines.loop import LoopStats
from ...errors import ConfigError
from .adapter import EDGE, GraphExampleSet
from .scores import GraphScores, score_set


def statistic_rows(data: GraphExampleSet) -> np.ndarray:
    """Positions of the rows of ``data`` that have a membership statistic: the supervised
    edge rows of a link task; the node rows of a node task (a node's row and its feature row,
    one prediction, counted once: the first of them)."""
    sup = data.labels.numpy() >= 0
    if data.task_kind == "link":
        return np.flatnonzero(sup & (data.kind == EDGE))
    pos = np.flatnonzero(sup & (data.kind != EDGE))
    _, first = np.unique(data.u[pos], return_index=True)
    return np.sort(pos[first])


def privacy_check(task) -> None:
    """ConfigError unless the forget set has rows with a statistic (before any training)."""
    if len(statistic_rows(task.forget)):
        return
    what = (
        "edges (on a node-classification task an edge has no prediction of its own)"
        if task.task_kind == "node"
        else "nodes or node features (on a link-prediction task only edges are predicted)"
    )
    raise ConfigError(
        f"--privacy needs forget rows the model predicts; this forget set holds only {what}: "
        "per-example privacy is not defined for it"
    )


def train_shadows(
    task, data: GraphExampleSet, seeds: list[int], progress: bool = False
) -> tuple[list[nn.Module], LoopStats]:
    """One model per seed, ``task.train_from_scratch(data, seed)`` (the task's recipe, message
    passing over ``data``'s graph only, its supervised rows the only examples), and their
    summed cost."""
    models, total = [], LoopStats()
    for i, s in enumerate(seeds):
        m, cost = task.train_from_scratch(data, s, progress, desc=f"shadow {i + 1}/{len(seeds)}")
        models.append(m.eval())
        total = total + cost
    return models, total


def _utility(sc: GraphScores) -> float:
    if sc.task_kind == "node":
        return sc.accuracy()
    from .metrics import link_auc

    return link_auc(sc.pos_score, sc.neg_score)[0]


def shadow_outputs(model: nn.Module, task) -> dict:
    """What one model says on the task (scoring view): ``example_ids``, ``labels`` and
    ``logits`` of the forget rows with a statistic (in the classifier's form, see the module
    docstring), and ``utility_retain`` / ``utility_test``."""
    view = task.scoring_view
    forget = task.forget
    pos = statistic_rows(forget)
    sc = score_set(model, forget, task.adapter, view)
    if task.task_kind == "link":
        s = sc.logits[pos, 0].astype(np.float64)
        logits, labels = np.stack([np.zeros_like(s), s], 1), np.ones(len(pos), dtype=np.int64)
    else:
        logits, labels = sc.logits[pos].astype(np.float64), sc.labels[pos].astype(np.int64)
    return {
        "example_ids": sc.example_ids[pos],
        "labels": labels,
        "logits": logits,
        "utility_retain": _utility(score_set(model, task.retain.supervised(), task.adapter, view)),
        "utility_test": _utility(score_set(model, task.test, task.adapter, view)),
    }
