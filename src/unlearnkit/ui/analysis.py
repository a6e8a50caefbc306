"""What the comparator computes, as pure functions over models, data and scores (no HTTP, no
files): class-wise accuracy, prediction matrices, hidden representations, 2-D embeddings
aligned by orthogonal Procrustes, layer-wise linear CKA, per-example attack features and the
instance panel's inputs.

Everything returns numpy arrays or plain Python values; :mod:`unlearnkit.ui.views` turns
them into the JSON of docs/comparator.md and caches it.
"""

from __future__ import annotations

import math
import threading
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.dataset import ExampleSet
from ..errors import ConfigError, ModelDataMismatchError
from ..evaluation.comparator import confidence_feature, entropy_feature
from ..modalities.classifier.scores import Scores
from ..utils import derive_seed

#: the modules whose outputs CKA compares (the "layers" of a classifier)
LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: per-example attack features, with the temperature the Comparator uses for each (Lee et al.
#: 2025; see :mod:`unlearnkit.evaluation.comparator`); loss is the cross-entropy of the label
ATTACK_FEATURES = ("entropy", "confidence", "loss")
FEATURE_TEMPERATURE = {"entropy": 2.0, "confidence": 1.0}
#: the clip ranges of the threshold sweep: entropy and confidence as the Comparator's official
#: code; loss (not a Comparator feature) over [0, 10] nats, where a loss above 10 means p_y < 5e-5
FEATURE_RANGE = {"entropy": (0.0, 2.5), "confidence": (-2.5, 10.0), "loss": (0.0, 10.0)}
BINS = 201

SAMPLE_SPLITS = ("forget", "retain", "test")


class MissingDependency(ConfigError):
    """An optional package the computation needs is not installed."""


# --------------------------------------------------------------------------- classes
def class_accuracy(scores: Scores, num_classes: int) -> np.ndarray:
    """Accuracy per true class, shape ``(K,)``; NaN for a class with no example in the split."""
    out = np.full(num_classes, np.nan)
    labels, correct = np.asarray(scores.labels), np.asarray(scores.correct, dtype=np.float64)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[c] = correct[mask].mean()
    return out


def prediction_matrix(scores: Scores, num_classes: int) -> np.ndarray:
    """Counts ``M[true, predicted]``, shape ``(K, K)``; ``M.sum() == len(scores)`` and row
    ``c`` sums to the number of examples of class ``c``."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(scores.labels, dtype=np.int64), np.asarray(scores.pred, dtype=np.int64)), 1)
    return m


# --------------------------------------------------------------------------- samples
def sample_indices(sizes: dict[str, int], total: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded sample of at most ``total`` examples over the splits ``sizes`` names: an
    equal share per split, a split too small for its share giving the rest to the others;
    indices sorted within each split. The same (sizes, total, seed) always give the same
    sample."""
    if total < 1:
        raise ConfigError(f"the sample size must be >= 1, not {total}")
    names = [s for s in sizes if sizes[s] > 0]
    quota = {s: 0 for s in sizes}
    left, open_ = int(total), list(names)
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for s in list(open_):
            take = min(share, sizes[s] - quota[s], left)
            quota[s] += take
            left -= take
            if quota[s] >= sizes[s]:
                open_.remove(s)
            if left <= 0:
                break
    out = {}
    for s, n in sizes.items():
        rng = np.random.default_rng(derive_seed(seed, "ui-sample", s) % (2**63))
        out[s] = np.sort(rng.choice(n, size=quota[s], replace=False)) if quota[s] else np.zeros(0, dtype=np.int64)
    return out


def take(data: ExampleSet, idx: np.ndarray) -> ExampleSet:
    """The examples at positions ``idx`` of ``data`` (same order)."""
    return data.take(np.asarray(idx, dtype=np.int64))


# --------------------------------------------------------------------------- representations
def layer_names(model: nn.Module) -> list[str]:
    """Names (``named_modules``) of the model's Linear and Conv layers, in registration order."""
    return [n for n, m in model.named_modules() if isinstance(m, LAYER_TYPES) and n]


# Forward hooks on a shared model, and why they filter by thread.
#
# The models a view reads are cached once per process (unlearnkit.ui.models) and FastAPI runs
# the sync endpoints in a thread pool, so /classifier/cka, /classifier/embeddings and any view
# that scores a model run forward passes through the *same* module objects at the same time.
# A forward hook fires for every pass through its module, whichever thread makes it: a plain
# hook registered by one request collected the other requests' batches too (CKA answered 422
# "(2143, 256) and (1000, 256)", the embeddings could silently take another batch's inputs,
# which is what ClassifierAdapter.representations does: it keeps the last input its hook saw).
#
# The hooks here record into a buffer of their own call and only the forward passes of the
# thread that registered them (a module's hooks run synchronously in the thread calling it;
# one request is one thread). That keeps the fix where the hooks are: a lock per cached model
# would have to be taken by *every* forward pass through it (the scoring in views.py, lm.py,
# the instance panel...), and one pass that forgets it brings the race back without a sign;
# per-request copies of the models cost their memory (a language model) and time. Nothing of
# the shared model is written either: its mode is switched (and restored) only when it is in
# training mode, which a cached model never is.


class _OwnPasses:
    """Forward hooks on ``modules[name]`` for ``names`` that record ``out`` (``what="output"``)
    or the first input (``"input"``) of the forward passes of the calling thread only, each
    into this object's own lists (``seen[name]``); removed on exit."""

    def __init__(self, modules: dict[str, nn.Module], names: Sequence[str], what: str = "output"):
        self.modules, self.names, self.what = modules, list(names), what
        self.seen: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._owner = threading.get_ident()
        self._handles: list = []

    def _hook(self, name: str):
        def record(_m, inputs, out):
            if threading.get_ident() != self._owner:
                return  # another request's forward pass through the shared model
            t = out if self.what == "output" else inputs[0]
            self.seen[name].append(t.detach().float().cpu())

        return record

    def __enter__(self) -> "_OwnPasses":
        try:
            for n in self.names:
                self._handles.append(self.modules[n].register_forward_hook(self._hook(n)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class _EvalMode:
    """The model in eval mode for a block; a model already in eval mode (every cached model
    of the comparator) is left untouched, so concurrent calls never flip each other's mode."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        if self.was_training:
            self.model.eval()
        return self.model

    def __exit__(self, *_exc) -> None:
        if self.was_training:
            self.model.train(True)


@torch.no_grad()
def layer_outputs(
    model: nn.Module, data: ExampleSet, adapter, layers: Sequence[str] | None = None, batch_size: int = 512
) -> dict[str, np.ndarray]:
    """The output of each named layer (default: every Linear/Conv layer) for every example of
    ``data``, flattened per example: ``{name: (N, D) float64}``, from forward hooks during one
    pass of the adapter's ``logits`` per batch (eval mode). Safe to call while other threads
    run forward passes through the same model: only this call's passes are recorded."""
    modules = dict(model.named_modules())
    names = list(layers) if layers is not None else layer_names(model)
    missing = [n for n in names if n not in modules]
    if missing:
        raise ModelDataMismatchError(f"the model has no module(s) {missing[:3]}")
    with _EvalMode(model), _OwnPasses(modules, names, "output") as rec:
        for batch in data.batches(batch_size):
            adapter.logits(model, batch)
    seen = rec.seen
    return {n: torch.cat([t.reshape(t.shape[0], -1) for t in seen[n]]).double().numpy() for n in names if seen[n]}


@torch.no_grad()
def penultimate(
    model: nn.Module, data: ExampleSet, adapter, layer: str | None = None, batch_size: int = 512
) -> np.ndarray:
    """The representation of every example that ``ClassifierAdapter.representations`` defines:
    the input of the module named ``layer``, by default of the last ``nn.Linear`` (the
    penultimate layer), flattened per example, ``(N, D)`` float64. Read through this module's
    own hook (one forward pass of the adapter's ``logits`` per batch, eval mode), not the
    adapter's, whose hook keeps whatever input the module saw last in any thread."""
    modules = dict(model.named_modules())
    name = layer if layer is not None else penultimate_name(model)
    if not name:
        raise ModelDataMismatchError("the model has no nn.Linear layer; name the layer to read")
    if name not in modules:
        raise ModelDataMismatchError(f"the model has no module {name!r}")
    parts = []
    with _EvalMode(model), _OwnPasses(modules, [name], "input") as rec:
        for batch in data.batches(batch_size):
            rec.seen[name].clear()
            adapter.logits(model, batch)
            if not rec.seen[name]:
                raise ModelDataMismatchError(f"the forward pass does not go through {name!r}")
            last = rec.seen[name][-1]  # a module called twice in one pass: its last call, as the adapter
            parts.append(last.reshape(last.shape[0], -1))
    return torch.cat(parts).double().numpy() if parts else np.zeros((0, 0))


def penultimate_name(model: nn.Module) -> str:
    """The module whose input :func:`penultimate` reads by default (the last ``nn.Linear``)."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linear[-1] if linear else ""


# --------------------------------------------------------------------------- embeddings
def pca_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The first two principal components of ``x`` (scikit-learn's PCA), ``(N, 2)``; a
    representation with fewer than two dimensions (or examples) is padded with zeros."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    k = min(2, n, d)
    out = np.zeros((n, 2))
    if k >= 1:
        out[:, :k] = PCA(n_components=k, random_state=seed % (2**32)).fit_transform(x)
    return out


def umap_2d(x: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426; the ``umap-learn`` package)
    of ``x`` to 2-D, seeded (single-threaded, so reproducible)."""
    try:
        import umap
    except ImportError:
        raise MissingDependency(
            "the UMAP projection needs umap-learn: pip install 'unlearnkit[ui]' (or use projection=pca)"
        ) from None
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 4:
        return pca_2d(x, seed)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, len(x) - 1),
        min_dist=min_dist,
        random_state=seed % (2**32),
        n_jobs=1,
    )
    return np.asarray(reducer.fit_transform(x), dtype=np.float64)


PROJECTIONS = {"pca": pca_2d, "umap": umap_2d}


def project(x: np.ndarray, projection: str = "pca", seed: int = 0) -> np.ndarray:
    """``x`` projected to 2-D with ``projection`` (``pca`` or ``umap``)."""
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection must be one of {', '.join(PROJECTIONS)}, not {projection!r}")
    return PROJECTIONS[projection](x, seed)


def procrustes_align(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """``b`` moved onto ``a`` by a rotation/reflection, an isotropic scale and a translation
    (orthogonal Procrustes, Schönemann 1966), ``a`` left as it is; and the disparity.

    With ``A``, ``B`` the centred point sets, ``R = argmin_{R^T R = I} ||B R - A||_F`` (from
    the SVD of ``B^T A``: ``scipy.linalg.orthogonal_procrustes``, which also returns ``s``, the
    sum of its singular values), the scale is ``s / ||B||_F^2`` and the aligned points are
    ``(s / ||B||_F^2) B R + mean(a)``. The disparity is that of ``scipy.spatial.procrustes``:
    the sum of squared distances after both sets are scaled to unit Frobenius norm,
    ``1 - (s / (||A||_F ||B||_F))^2``, in [0, 1]; 0 when ``b`` is a similarity transform of ``a``.
    """
    from scipy.linalg import orthogonal_procrustes

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"Procrustes needs point sets of one shape, not {a.shape} and {b.shape}")
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = a - ma, b - mb
    na, nb = np.linalg.norm(ca), np.linalg.norm(cb)
    if na == 0 or nb == 0:
        return np.broadcast_to(ma, b.shape).copy(), (0.0 if na == nb else 1.0)
    r, s = orthogonal_procrustes(cb, ca)
    aligned = (s / nb**2) * cb @ r + ma
    disparity = float(min(max(1.0 - (s / (na * nb)) ** 2, 0.0), 1.0))
    return aligned, disparity


# --------------------------------------------------------------------------- CKA
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same ``n`` examples.

    Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network Representations
    Revisited" (ICML; arXiv:1905.00414), eq. for the linear kernel: with ``X`` (n x p) and
    ``Y`` (n x q) centred per column,

        CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

    computed through the n x n Gram matrices ``K = X X^T``, ``L = Y Y^T``
    (``||Y^T X||_F^2 = tr(K L)``) when a representation is wider than ``n``. It lies in [0, 1],
    equals 1 for ``Y = X``, and is invariant to orthogonal transforms and isotropic scaling of
    either side (not to arbitrary invertible linear maps). NaN when a side is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ConfigError(f"CKA needs two (n, d) representations of the same examples, not {x.shape} and {y.shape}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = len(x)
    if max(x.shape[1], y.shape[1]) > n:
        k, l_ = x @ x.T, y @ y.T
        num = float((k * l_).sum())
        den = float(np.linalg.norm(k) * np.linalg.norm(l_))
    else:
        num = float(np.linalg.norm(y.T @ x) ** 2)
        den = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    if den <= 0 or not math.isfinite(den):
        return math.nan
    return min(max(num / den, 0.0), 1.0)


def cka_by_layer(reps: dict[str, np.ndarray], others: dict[str, np.ndarray], layers: Iterable[str]) -> list[float]:
    """Linear CKA per layer between two models' :func:`layer_outputs` (NaN where a layer is
    missing on either side)."""
    return [linear_cka(reps[n], others[n]) if n in reps and n in others else math.nan for n in layers]


# --------------------------------------------------------------------------- attack
def attack_features(scores: Scores) -> dict[str, np.ndarray]:
    """The per-example features of the simulated attack for one model on one split: the
    Comparator's entropy (``T = 2``) and confidence (``log p_max - log(1 - p_max)``, ``T = 1``)
    from :mod:`unlearnkit.evaluation.comparator`, and the cross-entropy loss of the label
    (:attr:`Scores.loss`). Unclipped; the Comparator clips to :data:`FEATURE_RANGE`."""
    return {
        "entropy": entropy_feature(scores.logits, FEATURE_TEMPERATURE["entropy"]),
        "confidence": confidence_feature(scores.logits, FEATURE_TEMPERATURE["confidence"]),
        "loss": np.asarray(scores.loss, dtype=np.float64),
    }


# --------------------------------------------------------------------------- instances
def instance_input(data: ExampleSet, i: int) -> dict:
    """What the instance panel shows of example ``i`` of ``data``: an image (``(C, H, W)``
    inputs with 1 or 3 channels: ``{kind: "image", height, width, channels, pixels}``, pixels
    in [0, 1] row-major, channels last, scaled by the data's own range), else a feature row
    (``{kind: "row", features: [[name, value]]}``, names from ``meta["features"]`` where the
    loader kept them), or text where the data holds it (``{kind: "text", text}``)."""
    texts = data.meta.get("texts") if isinstance(data.meta, dict) else None
    if texts is not None:
        return {"kind": "text", "text": str(texts[i])}
    x = data.inputs[i]
    if x.ndim == 3 and x.shape[0] in (1, 3):
        lo, hi = float(data.inputs.min()), float(data.inputs.max())
        scale = (hi - lo) or 1.0
        px = ((x.permute(1, 2, 0) - lo) / scale).clamp(0, 1).reshape(-1)
        return {
            "kind": "image",
            "height": int(x.shape[1]),
            "width": int(x.shape[2]),
            "channels": int(x.shape[0]),
            "pixels": [round(float(v), 4) for v in px],
        }
    flat = x.reshape(-1)
    names = data.meta.get("features") if isinstance(data.meta, dict) else None
    if not names or len(names) != len(flat):
        names = [f"x{j}" for j in range(len(flat))]
    return {"kind": "row", "features": [[str(n), float(v)] for n, v in zip(names, flat.tolist())]}


def nan_to_none(obj):
    """``obj`` with every NaN/inf float (numpy included) replaced by ``None``, numpy arrays
    and scalars turned into lists and Python numbers: strict JSON."""
    if isinstance(obj, dict):
        return {str(k): nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return nan_to_none(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj
