"""What each endpoint of the comparator's JSON API returns (docs/comparator.md, "The JSON API").

Each function takes the workspace and the query's values and returns a JSON-ready dict
(every number finite or None). Models come from :mod:`unlearnkit.ui.models` (hash
verified), computations from :mod:`unlearnkit.ui.analysis`, and every heavy result goes
through :class:`unlearnkit.ui.cache.ResultCache` keyed by the artifact hashes of the models
it reads, the task key, the forget and holdout fingerprints and the view's parameters.
Bad input raises :class:`~unlearnkit.ui.models.UIError` (the app answers it as
problem+json).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import UnlearnkitError
from ..evaluation import metrics as catalogue
from ..modalities import modality_of_spec
from ..modalities.classifier.adapter import ClassifierAdapter
from ..modalities.classifier.scores import Scores, compute_scores
from ..orchestration.experiment import Workspace, score_model
from ..orchestration.records import RunRecord
from ..orchestration.report.summary import scenario_label
from ..task import Task
from ..utils import derive_seed
from . import analysis
from . import graph as gviews
from .cache import ResultCache
from .models import Resolved, UIError, resolve_model, resolve_pair, task_label

#: the splits the classes view reports, in order
CLASS_SPLITS = ("forget", "retain", "test")
DEFAULT_SAMPLE = 2000
MAX_SAMPLE = 20000
#: examples CKA compares the layers on (a fixed, seeded sample of forget, retain and test)
CKA_SAMPLE = 1000
MAX_INSTANCES = 200
#: the catalogue's goals as the page's column goals
GOAL = {"higher": "max", "lower": "min", "reference": "reference"}


# --------------------------------------------------------------------------- helpers
def _clean(obj):
    return analysis.nan_to_none(obj)


def _cache(ws: Workspace) -> ResultCache:
    return ResultCache.of(ws)


def _run_modality(run: RunRecord) -> str:
    try:
        return modality_of_spec(run.task_spec).name
    except UnlearnkitError:
        return str((run.task_spec or {}).get("modality", ""))


def _task_label_of(run: RunRecord) -> str:
    try:
        return modality_of_spec(run.task_spec).task_label(run.task_spec or {})
    except Exception:  # noqa: BLE001 - a label is never worth an error
        return str((run.task_spec or {}).get("dataset", "task"))


def _split_params(task: Task) -> dict:
    """What identifies the data a view reads beyond the task key: the forget, retain and
    holdout sets."""
    return {
        "forget": task.split.forget_fingerprint,
        "retain": task.retain.fingerprint,
        "holdout": task.holdout.fingerprint,
    }


def _artifact(m: Resolved) -> str:
    return m.artifact or f"unsaved:{m.id}"


#: why the classifier views are not offered on a link-prediction pair (the page shows it)
NOT_FOR_LINKS = (
    "not for link prediction: the classifier views (class-wise accuracy, prediction matrix, "
    "embeddings, CKA) read class predictions of nodes, and a link-prediction model scores pairs of "
    "nodes; open the attack view (forget edges vs test edges) and its instance panel"
)


def _require_classifier(task: Task) -> None:
    kind = gviews.graph_kind(task)
    if kind == "node":
        return
    if kind == "link":
        raise UIError(422, f"the classifier views are {NOT_FOR_LINKS}", "wrong-view")
    if not isinstance(task.adapter, ClassifierAdapter):
        raise UIError(
            422,
            f"the classifier views need a classifier task; this is a {task.modality} task "
            "(open its own view from the pair's `views`)",
            "wrong-view",
        )


class _ScoreCache:
    """Scores of (model artifact, task splits), kept for the views of one page (an LRU)."""

    def __init__(self, size: int = 16):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, m: Resolved) -> dict:
        key = (m.task.key, _artifact(m), tuple(_split_params(m.task).values()))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = score_model(m.model, m.task)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_SCORES = _ScoreCache()


def scores_of(m: Resolved) -> dict[str, Scores]:
    """Per-split scores of model ``m`` on its task (one pass per split, kept per process)."""
    return _SCORES.get(m)


# --------------------------------------------------------------------------- workspace and runs
def has_service(ws: Workspace) -> bool:
    """Whether the deletion-request service's tables are there (``unlearnkit.ui.requests``
    decides where that module exists; else a ``service.db`` in the workspace)."""
    try:
        from . import requests as _requests  # written beside this module when the service views exist
    except ImportError:
        return (Path(ws.root) / "service.db").is_file()
    return bool(_requests.has_service(ws))


def workspace_view(ws: Workspace) -> dict:
    """``{home, runs, modalities, service, read_only}``."""
    runs = ws.store.list()
    return {
        "home": str(ws.root),
        "runs": len(runs),
        "modalities": sorted({_run_modality(r) for r in runs} - {""}),
        "service": has_service(ws),
        "read_only": bool(ws.read_only),
    }


def run_json(ws: Workspace, run: RunRecord) -> dict:
    """A run as the page's ``Run``."""
    try:
        present = bool(run.artifact) and ws.artifacts.exists(run.artifact)
    except UnlearnkitError:  # not an artifact hash
        present = False
    metrics = {
        k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None)
        for k, v in (run.metrics or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return {
        "id": run.id,
        "kind": run.kind,
        "method": run.method,
        "params": _clean(run.params or {}),
        "seed": int(run.seed),
        "status": run.status,
        "error": run.error,
        "modality": _run_modality(run),
        "task_key": run.task_key,
        "task_label": _task_label_of(run),
        "scenario_label": scenario_label(run.scenario) if run.scenario else "none",
        "forget_fingerprint": run.forget_fingerprint,
        "n_forget": len(run.forget_ids) if run.forget_ids else 0,
        "created_at": run.created_at,
        "parent": run.parent,
        "artifact": run.artifact,
        "artifact_present": present,
        "metrics": metrics,
    }


def columns(keys, modalities) -> list[dict]:
    """The page's ``Column`` of each metric key, in catalogue order: label, goal (``max``,
    ``min``, ``reference`` or None), help, unit, and whether it is a headline column."""
    mods = sorted(modalities) or None
    head = set(catalogue.headline_metrics(mods))
    out = []
    for k in catalogue.order_metrics(keys, mods):
        goal = catalogue.metric_goal(k, mods)
        out.append(
            {
                "key": k,
                "label": k,
                "goal": GOAL.get(goal) if goal else None,
                "help": catalogue.metric_help(k, mods),
                "unit": catalogue.metric_unit(k),
                "headline": k in head,
            }
        )
    return out


def runs_view(
    ws: Workspace,
    task: str | None = None,
    scenario: str | None = None,
    method: str | None = None,
    seed: int | None = None,
    kind: str | None = None,
) -> dict:
    """``{runs: [Run], columns: [Column]}``, newest first; ``task`` matches the task key (or
    a prefix) or the task label, ``scenario`` the scenario label."""
    rows = [run_json(ws, r) for r in ws.store.list(kind=kind or None, method=method or None)]
    if task:
        rows = [r for r in rows if r["task_key"].startswith(task) or r["task_label"] == task]
    if scenario:
        rows = [r for r in rows if r["scenario_label"] == scenario]
    if seed is not None:
        rows = [r for r in rows if r["seed"] == seed]
    keys = {k for r in rows for k in r["metrics"]}
    return {"runs": rows, "columns": columns(keys, {r["modality"] for r in rows if r["modality"]})}


# --------------------------------------------------------------------------- pair
def _classes(task: Task) -> list[str]:
    names = None
    for data in (task.train, task.test):
        meta = data.meta if isinstance(data.meta, dict) else {}
        names = meta.get("classes") or meta.get("class_names")
        if names:
            break
    k = int(task.adapter.num_classes)
    if names and len(names) == k:
        return [str(n) for n in names]
    return [str(c) for c in range(k)]


def forget_classes(task: Task) -> list[int]:
    """The classes the forget set holds entirely (every training example of the class is to
    be forgotten: a class scenario); empty when the forget set is a part of each class."""
    train = task.train.labels.numpy()
    forget = task.forget.labels.numpy()
    out = []
    for c in np.unique(forget):
        if (forget == c).sum() == (train == c).sum():
            out.append(int(c))
    return out


def pair_view(ws: Workspace, a: str, b: str | None = None) -> dict:
    """``{a: Model, b: Model, task: {key, label, modality, classes?, forget_classes?, n_forget,
    n_holdout}, views}``."""
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    info: dict = {
        "key": task.key,
        "label": task_label(task),
        "modality": task.modality,
        "scenario_label": scenario_label(task.split.scenario),
        "n_forget": len(task.forget),
        "n_retain": len(task.retain),
        "n_test": len(task.test),
        "n_holdout": len(task.holdout),
    }
    unavailable: dict[str, str] = {}
    kind = gviews.graph_kind(task)
    if kind is not None:
        info["graph"] = _graph_info(task)
        if kind == "node":
            info["classes"] = _classes(task)
            info["forget_classes"] = _graph_forget_classes(task)
            views = ["classifier", "attack"]
            if not _forget_has_nodes(task):
                views = ["classifier"]
                unavailable["attack"] = NO_FORGET_NODES
        else:
            info["classes"] = list(gviews.LINK_CLASSES)
            info["forget_classes"] = []
            views = ["attack"]
            unavailable["classifier"] = f"The classifier views are {NOT_FOR_LINKS}."
    elif isinstance(task.adapter, ClassifierAdapter):
        info["classes"] = _classes(task)
        info["forget_classes"] = forget_classes(task)
        views = ["classifier", "attack"]
    else:
        views = ["lm"]
    out = {"a": ma.to_json(), "b": mb.to_json(), "task": info, "views": views}
    if unavailable:
        out["unavailable"] = unavailable
    return out


NO_FORGET_NODES = (
    "The attack view is not for this forget set: it holds no labelled node (only edges), and a "
    "node-classification model makes no prediction of its own about an edge to attack; the "
    "class views show what the deletion did to the nodes"
)


def _forget_has_nodes(task: Task) -> bool:
    f = task.forget
    return bool(((f.kind != gviews.EDGE) & (f.labels.numpy() >= 0)).any())


def _graph_info(task: Task) -> dict:
    """A graph task's ``{task_kind, nodes, edges, has_features, retain_edges, forget_kinds}``
    (``forget_kinds``: the forget rows per kind: node, edge, features)."""
    g = task.graph
    return {
        "task_kind": gviews.graph_kind(task),
        "nodes": int(g.num_nodes),
        "edges": int(g.num_edges),
        "has_features": bool(g.has_features),
        "retain_edges": int(task.scoring_view.num_edges),
        "forget_kinds": task.forget.describe_kinds(),
    }


def _graph_forget_classes(task: Task) -> list[int]:
    """The classes whose every training node is in the forget set (node rows)."""
    train, forget = task.train, task.forget
    tl = train.labels.numpy()[(train.kind == gviews.NODE) & (train.labels.numpy() >= 0)]
    fl = forget.labels.numpy()[(forget.kind == gviews.NODE) & (forget.labels.numpy() >= 0)]
    return [int(c) for c in np.unique(fl) if (fl == c).sum() == (tl == c).sum()]


# --------------------------------------------------------------------------- classifier
def classes_view(ws: Workspace, a: str, b: str | None = None) -> dict:
    """Class-wise accuracy and prediction matrices (true x predicted) of both models on the
    forget, retain and test splits."""
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    _require_classifier(task)
    k = int(task.adapter.num_classes)

    def compute() -> dict:
        acc, mat = {}, {}
        for side, m in (("a", ma), ("b", mb)):
            sc = _class_scores(m)
            acc[side] = {s: analysis.class_accuracy(sc[s], k) for s in CLASS_SPLITS}
            mat[side] = {s: analysis.prediction_matrix(sc[s], k) for s in CLASS_SPLITS}
        return _clean(
            {
                "classes": _classes(task),
                "forget_classes": forget_classes(task),
                "splits": list(CLASS_SPLITS),
                "accuracy": acc,
                "matrix": mat,
            }
        )

    return _cache(ws).get_or_compute("classes", [_artifact(ma), _artifact(mb)], task.key, _split_params(task), compute)


def _class_scores(m: Resolved) -> dict:
    """Per split, the scores the class views read: a classifier's :class:`Scores`; a graph
    node task's node rows (node and feature rows with a label, as ``node_acc_*``)."""
    sc = scores_of(m)
    if gviews.graph_kind(m.task) is None:
        return sc
    return {s: gviews.node_rows(sc[s], getattr(m.task, s)) for s in ("forget", "retain", "test", "holdout")}


def _graph_sample(task: Task, n: int, seed: int) -> dict:
    """A seeded sample of at most ``n`` nodes of the forget, retain and test node rows (one
    row per node: a node deleted with its features counts once): ``{ids, split, label, u}``."""
    per: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for s in analysis.SAMPLE_SPLITS:
        d = getattr(task, s)
        lab = d.labels.numpy()
        mask = (d.kind != gviews.EDGE) & (lab >= 0)
        pos = np.flatnonzero(mask)
        _, first = np.unique(d.u[pos], return_index=True)
        pos = pos[np.sort(first)]
        per[s] = (d.example_ids[pos].astype(str), lab[pos], d.u[pos])
    idx = analysis.sample_indices({s: len(per[s][0]) for s in per}, n, seed)
    out: dict = {"ids": [], "split": [], "label": [], "u": []}
    for s in analysis.SAMPLE_SPLITS:
        ids, lab, u = per[s]
        j = idx[s]
        out["ids"] += ids[j].tolist()
        out["split"] += [s] * len(j)
        out["label"] += lab[j].tolist()
        out["u"] += u[j].tolist()
    return out


def _sample(task: Task, n: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded sample of at most ``n`` forget, retain and test examples (positions per split)."""
    return analysis.sample_indices({s: len(getattr(task, s)) for s in analysis.SAMPLE_SPLITS}, n, seed)


def _sample_set(task: Task, idx: dict[str, np.ndarray]):
    from ..data.dataset import ExampleSet

    parts = [analysis.take(getattr(task, s), idx[s]) for s in analysis.SAMPLE_SPLITS if len(idx[s])]
    data = ExampleSet.concat(parts, "ui-sample")
    split = [s for s in analysis.SAMPLE_SPLITS for _ in range(len(idx[s]))]
    return data, split


def embeddings_view(
    ws: Workspace, a: str, b: str | None = None, projection: str = "pca", sample: int = DEFAULT_SAMPLE
) -> dict:
    """Both models' penultimate representations of one seeded sample of forget, retain and
    test examples, each projected to 2-D (``pca`` or ``umap``) and ``b`` aligned to ``a`` by
    orthogonal Procrustes: ``{projection, sample: {ids, split, label}, a, b, pred: {a, b},
    procrustes_disparity, layer}``."""
    if projection not in analysis.PROJECTIONS:
        raise UIError(422, f"projection must be one of {', '.join(analysis.PROJECTIONS)}, not {projection!r}")
    if not 1 <= int(sample) <= MAX_SAMPLE:
        raise UIError(422, f"sample must be in 1..{MAX_SAMPLE}, not {sample}")
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    _require_classifier(task)
    seed = int(task.seed)

    def compute_graph() -> dict:
        smp = _graph_sample(task, int(sample), seed)
        u = np.asarray(smp["u"], dtype=np.int64)
        reps, preds = {}, {}
        for side, m in (("a", ma), ("b", mb)):
            h, out = gviews.penultimate_nodes(m.model, task.scoring_view, task.adapter)
            reps[side], preds[side] = h[u], out[u].argmax(1)
        n_layers = len(gviews.gnn_layers(ma.model, task.scoring_view, task.adapter)[0])
        try:
            pa = analysis.project(reps["a"], projection, seed)
            pb = analysis.project(reps["b"], projection, seed)
        except analysis.MissingDependency as e:
            raise UIError(501, str(e), "missing-dependency", "Not available") from None
        pb, disparity = analysis.procrustes_align(pa, pb)
        return _clean(
            {
                "projection": projection,
                "sample": {"ids": smp["ids"], "split": smp["split"], "label": smp["label"]},
                "a": np.round(pa, 5),
                "b": np.round(pb, 5),
                "pred": preds,
                "procrustes_disparity": disparity,
                "layer": f"input of layer {n_layers}, the last GNN layer (every node, on the retain graph)",
            }
        )

    def compute() -> dict:
        if gviews.graph_kind(task) is not None:
            return compute_graph()
        idx = _sample(task, int(sample), seed)
        data, split = _sample_set(task, idx)
        xa = analysis.penultimate(ma.model, data, task.adapter)
        xb = analysis.penultimate(mb.model, data, task.adapter)
        try:
            pa = analysis.project(xa, projection, seed)
            pb = analysis.project(xb, projection, seed)
        except analysis.MissingDependency as e:
            raise UIError(501, str(e), "missing-dependency", "Not available") from None
        pb, disparity = analysis.procrustes_align(pa, pb)
        preds = {side: compute_scores(m.model, data, task.adapter).pred for side, m in (("a", ma), ("b", mb))}
        return _clean(
            {
                "projection": projection,
                "sample": {
                    "ids": [str(i) for i in data.example_ids],
                    "split": split,
                    "label": data.labels.numpy(),
                },
                "a": np.round(pa, 5),
                "b": np.round(pb, 5),
                "pred": preds,
                "procrustes_disparity": disparity,
                "layer": f"input of {analysis.penultimate_name(ma.model)}",
            }
        )

    params = {**_split_params(task), "projection": projection, "sample": int(sample), "seed": seed}
    return _cache(ws).get_or_compute("embeddings", [_artifact(ma), _artifact(mb)], task.key, params, compute)


def _reference_for(ws: Workspace, ma: Resolved, mb: Resolved) -> tuple[Resolved | None, str | None]:
    """The reference of the pair (of whichever model has a forget set), or why there is none."""
    for m in (ma, mb):
        if m.kind == "reference":
            return m, None
    run = ma.record if ma.forget_fingerprint is not None else mb.record
    try:
        return resolve_model(ws, f"reference:{run.id}"), None
    except UIError as e:
        return None, e.detail


def cka_view(ws: Workspace, a: str, b: str | None = None) -> dict:
    """Linear CKA (Kornblith et al. 2019) per Linear/Conv layer of each model against the
    original and the reference, on a fixed seeded sample of forget, retain and test examples:
    ``{layers, a_vs_original, a_vs_reference, b_vs_original, b_vs_reference, a_vs_b, n}``."""
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    _require_classifier(task)
    ref, why = _reference_for(ws, ma, mb)
    original_artifact = next((m.artifact for m in (ma, mb) if m.kind == "original" and m.artifact), None)
    seed = int(task.seed)

    def compute() -> dict:
        models = {"a": ma.model, "b": mb.model, "original": task.original}
        if ref is not None:
            models["reference"] = ref.model
        if gviews.graph_kind(task) is not None:  # per GNN layer, every sampled node's output
            smp = _graph_sample(task, CKA_SAMPLE, derive_seed(seed, "cka") % (2**31))
            u = np.asarray(smp["u"], dtype=np.int64)
            per = {k: gviews.gnn_layers(m, task.scoring_view, task.adapter)[0] for k, m in models.items()}
            depth = min(len(v) for v in per.values())  # layers matched by position
            layers = [f"layer {i + 1}" for i in range(depth)]
            reps = {k: {layers[i]: v[i][u] for i in range(depth)} for k, v in per.items()}
            n_rows = len(u)
        else:
            idx = _sample(task, CKA_SAMPLE, derive_seed(seed, "cka") % (2**31))
            data, _ = _sample_set(task, idx)
            names = [set(analysis.layer_names(m)) for m in models.values()]
            layers = [n for n in analysis.layer_names(ma.model) if all(n in s for s in names)]
            reps = {k: analysis.layer_outputs(m, data, task.adapter, layers) for k, m in models.items()}
            n_rows = len(data)
        out = {
            "layers": layers,
            "n": n_rows,
            "a_vs_original": analysis.cka_by_layer(reps["a"], reps["original"], layers),
            "b_vs_original": analysis.cka_by_layer(reps["b"], reps["original"], layers),
            "a_vs_b": analysis.cka_by_layer(reps["a"], reps["b"], layers),
        }
        for side in ("a", "b"):
            out[f"{side}_vs_reference"] = (
                analysis.cka_by_layer(reps[side], reps["reference"], layers)
                if ref is not None
                else [None] * len(layers)
            )
        out["reference"] = None if ref is None else ref.to_json()
        out["reference_missing"] = why
        return _clean(out)

    arts = [_artifact(ma), _artifact(mb), original_artifact or f"original:{task.key}", _artifact(ref) if ref else None]
    return _cache(ws).get_or_compute("cka", arts, task.key, {**_split_params(task), "n": CKA_SAMPLE}, compute)


def _locate(task: Task, ids: list[str]) -> list[tuple[str, str]]:
    """``(id, split)`` of each id: forget, retain, test or holdout (404 for an unknown id)."""
    out, unknown = [], []
    for i in ids:
        for s in ("forget", "retain", "test", "holdout"):
            if getattr(task, s).has(i):
                out.append((i, s))
                break
        else:
            unknown.append(i)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UIError(
            404, f"{len(unknown)} example id(s) are in none of this task's splits: {shown}", "unknown-example"
        )
    return out


def instances_view(ws: Workspace, a: str, b: str | None, ids: str | list[str]) -> dict:
    """The instance panel: per example its split, label, input (image, feature row or text)
    and both models' probabilities, prediction and loss."""
    want = [i.strip() for i in (ids.split(",") if isinstance(ids, str) else ids) if i and i.strip()]
    want = list(dict.fromkeys(want))
    if not want:
        return {"rows": []}
    if len(want) > MAX_INSTANCES:
        raise UIError(422, f"at most {MAX_INSTANCES} instances at a time, not {len(want)}")
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    if gviews.graph_kind(task) is not None:
        return _graph_instances(ma, mb, want)
    _require_classifier(task)
    rows = []
    for split in ("forget", "retain", "test", "holdout"):
        mine = [i for i, s in _locate(task, want) if s == split]
        if not mine:
            continue
        data = getattr(task, split).select(mine)
        sc = {side: compute_scores(m.model, data, task.adapter) for side, m in (("a", ma), ("b", mb))}
        for j, eid in enumerate(mine):
            rows.append(
                {
                    "id": eid,
                    "split": split,
                    "label": int(data.labels[j]),
                    "input": analysis.instance_input(data, j),
                    **{
                        side: {
                            "probs": s.probs[j],
                            "pred": int(s.pred[j]),
                            "loss": float(s.loss[j]),
                        }
                        for side, s in sc.items()
                    },
                }
            )
    order = {i: n for n, i in enumerate(want)}
    rows.sort(key=lambda r: order[r["id"]])
    return _clean({"rows": rows})


def _graph_instances(ma: Resolved, mb: Resolved, want: list[str]) -> dict:
    """The instance panel of a graph task: per node row its id, label, degree (in the whole
    graph and in the retain graph the models are scored on) and top features (or "no
    features"); per edge row its end nodes and each model's edge probability
    ``sigma(s(u, v))`` (``probs``: ``[1 - p, p]``, classes "no edge", "edge"); both models'
    probabilities, prediction and loss. A row the task does not supervise (an edge of a node
    task, a node of a link task) has ``a``/``b`` with empty ``probs`` and a null loss."""
    task = ma.task
    kind = gviews.graph_kind(task)
    g = task.graph
    view = task.scoring_view
    edges = g.edges.numpy()
    deg = gviews.degrees(edges, g.num_nodes)
    deg_retain = gviews.degrees(edges, g.num_nodes, view.edge_keep)
    node_ids = np.asarray(g.node_ids).astype(str)
    rows = []
    for split in ("forget", "retain", "test", "holdout"):
        mine = [i for i, s in _locate(task, want) if s == split]
        if not mine:
            continue
        data = getattr(task, split)
        pos = data.positions(mine)
        sc = {side: scores_of(m)[split] for side, m in (("a", ma), ("b", mb))}
        for eid, j in zip(mine, pos.tolist()):
            rk, u, v = int(data.kind[j]), int(data.u[j]), int(data.v[j])
            label = int(data.labels[j])
            if rk == gviews.EDGE:
                info = {
                    "kind": "edge",
                    "u": node_ids[u],
                    "v": node_ids[v],
                    "degree_u": int(deg[u]),
                    "degree_v": int(deg[v]),
                    "in_retain_graph": bool(data.edge_keep[int(data.eref[j])]) if int(data.eref[j]) >= 0 else False,
                }
                inp = {"kind": "edge", "u": node_ids[u], "v": node_ids[v]}
            else:
                info = {
                    "kind": "node" if rk == gviews.NODE else "features",
                    "node": node_ids[u],
                    "degree": int(deg[u]),
                    "degree_retain": int(deg_retain[u]),
                }
                inp = gviews.node_input(g, u, bool(view.x_zero[u]))
            sides = {}
            for side, s in sc.items():
                z = np.asarray(s.logits[j], dtype=np.float64)
                loss = float(s.loss[j])
                if label < 0:
                    sides[side] = {"probs": [], "pred": -1, "loss": None}
                elif kind == "link":
                    p = float(1.0 / (1.0 + np.exp(-np.clip(z[0], -50, 50))))
                    sides[side] = {"probs": [1.0 - p, p], "pred": int(p >= 0.5), "loss": loss, "edge_prob": p}
                else:
                    e = np.exp(z - z.max())
                    sides[side] = {"probs": e / e.sum(), "pred": int(z.argmax()), "loss": loss}
            row = {"id": eid, "split": split, "label": label, "graph": info, "input": inp, **sides}
            if label < 0:
                row["note"] = (
                    "an edge of a node-classification task: it reaches the models only through the graph"
                    if rk == gviews.EDGE
                    else "a node of a link-prediction task: the models score edges, not nodes"
                )
            rows.append(row)
    order = {i: n for n, i in enumerate(want)}
    rows.sort(key=lambda r: order[r["id"]])
    return _clean({"rows": rows})


# --------------------------------------------------------------------------- attack
def _privacy_report(ws: Workspace, m: Resolved) -> dict:
    """What the run's newest privacy report (``evaluate --privacy N``) says: U-LiRA's
    aggregates (metrics of that evaluation) and its per-example result, which
    :func:`unlearnkit.requests.evaluate_run` keeps beside the evaluation
    (:func:`~unlearnkit.requests.read_privacy_examples`): ``{ids, success, auc, n_shadow,
    evaluation}`` or None, and why not."""
    from ..requests import read_privacy_examples

    if m.kind != "run":
        return {"value": None, "reason": f"{m.label} is not a run with a privacy report", "summary": None}
    metrics = dict(m.record.metrics or {})
    latest = None
    try:
        for ev in ws.store.evaluations(m.record.id):  # oldest first: the newest report wins
            if (ev.inputs or {}).get("privacy"):
                metrics.update(ev.metrics or {})
                latest = ev
    except UnlearnkitError:
        pass
    keys = ("ulira_auc", "ulira_acc", "ulira_tpr_at_1fpr", "ulira_tpr_at_01fpr", "n_shadow")
    summary = {k: metrics[k] for k in keys if k in metrics}
    if not summary:
        return {
            "value": None,
            "reason": f"run {m.record.id} has no privacy report; run `unlearnkit evaluate {m.record.id} --privacy 16`",
            "summary": None,
        }
    doc = read_privacy_examples(ws, latest.id) if latest is not None else None
    if doc is None:
        return {
            "value": None,
            "reason": "the stored privacy report holds U-LiRA's aggregates only (auc, acc, TPR at low FPR), "
            f"not its per-example success; run `unlearnkit evaluate {m.record.id} --privacy "
            f"{int(summary.get('n_shadow') or 16)}` again to keep it",
            "summary": summary,
        }
    auc = doc.get("ulira_auc")
    return {
        "value": {
            "ids": [str(i) for i in doc["ids"]],
            "success": list(doc["ulira_acc"]),
            "auc": list(auc) if isinstance(auc, list) and len(auc) == len(doc["ids"]) else None,
            "n_shadow": doc.get("n_shadow"),
            "evaluation": latest.id,
        },
        "reason": None,
        "summary": summary,
    }


def attack_view(ws: Workspace, a: str, b: str | None = None) -> dict:
    """Per-example attack features (entropy, confidence, loss) of both models on the forget
    set (members) and the holdout (non-members), the Comparator's clip ranges and bins, and
    U-LiRA's per-example success where a run's privacy report holds it."""
    ma, mb = resolve_pair(ws, a, b)
    task = ma.task
    kind = gviews.graph_kind(task)
    if kind is None:
        _require_classifier(task)
    elif kind == "node" and not _forget_has_nodes(task):
        raise UIError(422, NO_FORGET_NODES, "wrong-view")

    def features(m: Resolved, split: str) -> tuple[list[str], dict]:
        sc = scores_of(m)[split]
        if kind == "link":  # the edge rows: forget edges vs test edges
            rows = gviews.edge_rows(sc, getattr(task, split))
            return rows.example_ids.tolist(), gviews.link_attack_features(rows)
        if kind == "node":  # the node rows: forget nodes vs test nodes
            rows = gviews.node_rows(sc, getattr(task, split))
            return rows.example_ids.tolist(), analysis.attack_features(rows)
        return [str(i) for i in sc.example_ids], analysis.attack_features(sc)

    def compute() -> dict:
        out: dict = {"features": list(analysis.ATTACK_FEATURES)}
        for split in ("forget", "holdout"):
            block: dict = {}
            for side, m in (("a", ma), ("b", mb)):
                block["ids"], feats = features(m, split)
                block[side] = {k: np.round(v, 6) for k, v in feats.items()}
            out[split] = block
        if kind is not None:
            out["about"] = dict(gviews.LINK_FEATURE_ABOUT if kind == "link" else gviews.NODE_FEATURE_ABOUT)
            out["rows"] = "edges" if kind == "link" else "nodes"
        out["ranges"] = {k: list(v) for k, v in analysis.FEATURE_RANGE.items()}
        out["temperatures"] = dict(analysis.FEATURE_TEMPERATURE)
        out["bins"] = analysis.BINS
        return _clean(out)

    result = _cache(ws).get_or_compute("attack", [_artifact(ma), _artifact(mb)], task.key, _split_params(task), compute)
    reports = {side: _privacy_report(ws, m) for side, m in (("a", ma), ("b", mb))}
    result = dict(result)
    result["ulira"] = {
        "a": reports["a"]["value"],
        "b": reports["b"]["value"],
        "reason": {side: r["reason"] for side, r in reports.items()},
        "summary": {side: r["summary"] for side, r in reports.items()},
    }
    return _clean(result)


__all__ = [
    "workspace_view",
    "runs_view",
    "pair_view",
    "classes_view",
    "embeddings_view",
    "cka_view",
    "instances_view",
    "attack_view",
    "has_service",
]
