"""Curvature and per-example gradient tools shared by second-order and importance methods.

One place for what Fisher forgetting, selective synaptic dampening, influence unlearning
and IMU need: per-example gradients, the diagonal of the Fisher information of a dataset,
loss gradients summed over a dataset, Hessian-vector and Gauss-Newton-vector products
and conjugate gradients. Everything goes through the modality adapter's ``per_example_loss``,
so any adapter whose model is a plain ``nn.Module`` works.

Per-example gradients of linear, convolution and eval-mode batch-norm layers are
computed in closed form from one batched backward (e.g. a linear layer's per-example
weight gradient is the outer product of its output gradient and its input), which is
exact and far faster than ``torch.func.vmap``; models with other parameterised layers
fall back to ``vmap`` over ``torch.func.grad`` (whose first call in a process also costs
a few seconds of set-up).

Parameters are handled as ``dict[name, Tensor]`` over the model's trainable parameters
(``named_parameters()`` order, ``requires_grad`` only); :func:`flatten` and
:func:`unflatten` convert to one vector for linear algebra. All functions evaluate the
model in eval mode (no dropout, batch-norm running statistics) and restore its mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data.dataset import ExampleSet
from ..errors import ConfigError

Params = dict[str, torch.Tensor]
FISHER_KINDS = ("empirical", "true", "batch")


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that require grad, by name, in ``named_parameters()`` order."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def head_parameters(model: nn.Module, num_classes: int) -> dict[str, nn.Parameter]:
    """The output layer's parameters: those of the last module (in registration order)
    that owns parameters, checked to have ``num_classes`` outputs (a weight of shape
    ``(num_classes, ...)``). Raises ConfigError when the model ends otherwise."""
    owners = [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if owners:
        prefix, module = owners[-1]
        params = {(f"{prefix}.{n}" if prefix else n): p for n, p in module.named_parameters(recurse=False)}
        if all(p.shape[0] == num_classes for p in params.values()):
            return params
    raise ConfigError(
        f"cannot find the model's output layer: its last layer with parameters must have "
        f"{num_classes} outputs (one per class)"
    )


def flatten(tensors: Params) -> torch.Tensor:
    """One vector of all entries, in the dict's order."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vec: torch.Tensor, like: Params) -> Params:
    """The inverse of :func:`flatten` for tensors shaped like ``like``."""
    out, i = {}, 0
    for name, t in like.items():
        out[name] = vec[i : i + t.numel()].view_as(t)
        i += t.numel()
    return out


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _loss_fn(model: nn.Module, adapter, names: list[str]) -> Callable:
    """``(params, x, y) -> per-example losses`` with ``params`` (a dict over ``names``)
    substituted into the model and everything else held at its current value."""
    fixed = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers()) if n not in names}

    def loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def f(inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(model, {**fixed, **params}, (inputs,))

        return adapter.per_example_loss(f, {"x": x, "y": y})

    return loss


def _vmap_grads(
    model: nn.Module, adapter, batch: dict, labels: torch.Tensor, params: dict[str, nn.Parameter]
) -> Params:
    """Per-example gradients by ``torch.func.vmap`` over ``torch.func.grad`` (any layer)."""
    loss = _loss_fn(model, adapter, list(params))

    def one(p: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss(p, xi.unsqueeze(0), yi.unsqueeze(0)).sum()

    detached = {n: p.detach() for n, p in params.items()}
    return vmap(grad(one), in_dims=(None, 0, 0))(detached, batch["x"], labels)


def _supported(m: nn.Module) -> bool:
    """Layers whose per-example gradients :class:`_Capture` computes in closed form."""
    if isinstance(m, nn.Linear):
        return True
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    return isinstance(m, nn.BatchNorm2d) and m.affine and m.track_running_stats


def _layers(model: nn.Module, params: dict[str, nn.Parameter]) -> dict[str, nn.Module] | None:
    """``{module name: module}`` owning ``params`` when every one is a parameter of a
    layer :class:`_Capture` supports (the fast path), else None (use ``vmap``)."""
    owner = {}
    for mname, m in model.named_modules():
        for pname, _ in m.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = (mname, m)
    layers = {}
    for name in params:
        mname, m = owner.get(name, (None, None))
        if m is None or not _supported(m):
            return None
        layers[mname] = m
    return layers


class _Capture:
    """One forward pass that records the input ``a`` and output of each supported layer, so
    that per-example gradients follow from the output gradients ``delta_i = dl_i / d out_i``
    of one batched backward (as in Opacus and BackPACK):

    * ``nn.Linear``: ``dl_i/dW = delta_i a_i^T``, ``dl_i/db = delta_i``;
    * ``nn.Conv2d``: ``dl_i/dW = sum_p delta_i[:, p] U_i[:, p]^T`` with ``U_i`` the unfolded
      input patches (``F.unfold``), ``dl_i/db = sum_p delta_i[:, p]``;
    * ``nn.BatchNorm2d`` in eval mode: ``dl_i/dgamma = sum_p delta_i x_hat_i``,
      ``dl_i/dbeta = sum_p delta_i``, ``x_hat`` normalised by the running statistics.

    ``ok`` is False (use the general path) when a layer runs more than once, a linear
    layer's input is not a ``(batch, features)`` matrix, a batch norm is in training mode,
    or an output is modified in place."""

    def __init__(self, model: nn.Module, adapter, batch: dict, layers: dict[str, nn.Module]):
        self.layers, self.adapter, self.model, self.batch = layers, adapter, model, batch
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self._patches: dict[str, torch.Tensor] = {}
        calls, versions = {k: 0 for k in layers}, {}

        def hook(key):
            def f(module, args, out):
                calls[key] += 1
                self.inputs[key], self.outputs[key], versions[key] = args[0].detach(), out, out._version

            return f

        handles = [m.register_forward_hook(hook(k)) for k, m in layers.items()]
        try:
            self.logits = adapter.logits(model, batch)
        finally:
            for h in handles:
                h.remove()
        self.ok = (
            all(c == 1 for c in calls.values())
            and all(self.inputs[k].ndim == 2 for k, m in layers.items() if isinstance(m, nn.Linear))
            and not any(m.training for m in layers.values())
            and all(self.outputs[k]._version == v for k, v in versions.items())
        )

    def deltas(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``delta_i`` of every layer for the per-example losses at ``labels``."""
        loss = self.adapter.per_example_loss(self.model, self.batch, labels=labels, logits=self.logits).sum()
        keys = list(self.layers)
        grads = torch.autograd.grad(loss, [self.outputs[k] for k in keys], retain_graph=True, allow_unused=True)
        return {k: (g.detach() if g is not None else torch.zeros_like(self.outputs[k])) for k, g in zip(keys, grads)}

    def grads(self, key: str, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example gradients ``{parameter name: (B, *shape)}`` of layer ``key``."""
        m, a = self.layers[key], self.inputs[key]
        prefix = f"{key}." if key else ""
        if isinstance(m, nn.Linear):
            w, b = torch.einsum("bo,bi->boi", delta, a), delta
        elif isinstance(m, nn.Conv2d):
            if key not in self._patches:  # the same for every label set
                self._patches[key] = nn.functional.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride).transpose(
                    1, 2
                )
            d = delta.flatten(2)
            w, b = torch.bmm(d, self._patches[key]).view(len(a), *m.weight.shape), d.sum(2)
        else:
            shape = (1, -1) + (1,) * (a.ndim - 2)
            x_hat = (a - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
            w, b = (delta * x_hat).flatten(2).sum(2), delta.flatten(2).sum(2)
        out = {prefix + "weight": w}
        if m.bias is not None:
            out[prefix + "bias"] = b
        return out


def per_example_grads(
    model: nn.Module,
    adapter,
    batch: dict,
    labels: torch.Tensor | None = None,
    params: dict[str, nn.Parameter] | None = None,
) -> Params:
    """Gradient of each example's loss, ``{name: (B, *shape)}``, for ``params`` (default:
    all trainable), with ``labels`` overriding ``batch["y"]``. Exact closed forms for
    linear, convolution and (eval-mode) batch-norm layers, ``torch.func.vmap`` otherwise."""
    params = trainable(model) if params is None else params
    batch = adapter.to_device(batch)
    labels = (batch["y"] if labels is None else labels).to(adapter.device)
    layers = _layers(model, params)
    with _eval(model):
        cap = _Capture(model, adapter, batch, layers) if layers else None
        if cap is None or not cap.ok:
            return _vmap_grads(model, adapter, batch, labels, params)
        out: Params = {}
        for key, d in cap.deltas(labels).items():
            out.update(cap.grads(key, d))
        return {n: out[n] for n in params}


def diagonal_fisher(
    model: nn.Module,
    adapter,
    data: ExampleSet,
    batch_size: int = 256,
    kind: str = "empirical",
    params: dict[str, nn.Parameter] | None = None,
) -> Params:
    """Diagonal of the Fisher information of ``data`` at the current weights, per parameter.

    ``kind``:

    * ``"empirical"``: ``mean_i (d l(x_i, y_i) / d theta)^2`` over per-example gradients
      at the true labels (the empirical Fisher).
    * ``"true"``: ``mean_i sum_y p_theta(y | x_i) (d l(x_i, y) / d theta)^2``, the
      expectation under the model's own predictive distribution (what Golatkar et al.'s
      official code computes); costs one backward per class and example.
    * ``"batch"``: ``mean_b (d mean_{i in b} l(x_i, y_i) / d theta)^2`` over the
      ``batch_size`` batches of ``data`` in order (squared mini-batch gradients, as in
      Foster et al.'s SSD code); depends on the batch size.

    Per-example gradients come from one batched backward per label set for linear,
    convolution and eval-mode batch-norm layers (:class:`_Capture`; a linear layer's
    squared gradients are summed without materialising them, ``sum_i w_i (delta_i
    a_i^T)^2 = (w delta^2)^T a^2``), and from ``torch.func.vmap`` for other models. Memory
    grows with ``batch_size`` times the largest layer (times all parameters with ``vmap``).
    """
    if kind not in FISHER_KINDS:
        raise ConfigError(f"fisher kind must be one of {', '.join(FISHER_KINDS)}, not {kind!r}")
    if len(data) == 0:
        raise ConfigError("cannot compute a Fisher information over an empty data set")
    params = trainable(model) if params is None else params
    layers = _layers(model, params) if kind != "batch" else None
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    batches = 0
    with _eval(model):
        for batch in data.batches(batch_size):
            batch = adapter.to_device(batch)
            if kind == "batch":
                loss = adapter.per_example_loss(model, batch).mean()
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (n, t), g in zip(total.items(), grads):
                    if g is not None:
                        t += g.detach() ** 2
                batches += 1
                continue
            y = batch["y"]
            if kind == "empirical":
                targets = [(y, torch.ones(len(y), device=y.device))]
            else:
                with torch.no_grad():
                    probs = torch.softmax(adapter.logits(model, batch), -1)
                targets = [(torch.full_like(y, c), probs[:, c]) for c in range(probs.shape[1])]
            cap = _Capture(model, adapter, batch, layers) if layers else None
            for labels, w in targets:
                if cap is None or not cap.ok:
                    grads = _vmap_grads(model, adapter, batch, labels, params)
                else:
                    grads = {}
                    for key, d in cap.deltas(labels).items():
                        if isinstance(cap.layers[key], nn.Linear):  # no per-example tensors needed
                            wd2 = d**2 * w[:, None]
                            prefix = f"{key}." if key else ""
                            for n, v in (
                                (prefix + "weight", wd2.T @ cap.inputs[key] ** 2),
                                (prefix + "bias", wd2.sum(0)),
                            ):
                                if n in total:
                                    total[n] += v
                            continue
                        grads.update(cap.grads(key, d))
                for n, g in grads.items():
                    if n in total:
                        total[n] += torch.tensordot(w, g * g, dims=1)
    denom = batches if kind == "batch" else len(data)
    return {n: t / denom for n, t in total.items()}


def loss_gradient(
    model: nn.Module,
    adapter,
    data: ExampleSet,
    batch_size: int = 256,
    reduction: str = "sum",
    params: dict[str, nn.Parameter] | None = None,
) -> Params:
    """Gradient of ``sum_i l(x_i, y_i)`` (or the mean) over ``data`` at the current weights."""
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reduction must be sum or mean, not {reduction!r}")
    params = trainable(model) if params is None else params
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    scale = 1.0 if reduction == "sum" else 1.0 / max(1, len(data))
    with _eval(model):
        for batch in data.batches(batch_size):
            loss = adapter.per_example_loss(model, batch).sum() * scale
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (n, t), g in zip(total.items(), grads):
                if g is not None:
                    t += g.detach()
    return total


def hessian_vector_product(
    model: nn.Module, adapter, batch: dict, vec: Params, params: dict[str, nn.Parameter] | None = None
) -> Params:
    """``H v`` with ``H`` the Hessian of the mean loss over ``batch`` with respect to
    ``params`` (exact, by double backward: ``d/dtheta (grad L(theta) . v)``)."""
    params = trainable(model) if params is None else params
    ps = list(params.values())
    with _eval(model):
        loss = adapter.per_example_loss(model, adapter.to_device(batch)).mean()
        grads = torch.autograd.grad(loss, ps, create_graph=True, allow_unused=True)
        dot = sum((g * vec[n]).sum() for n, g in zip(params, grads) if g is not None)
        if not torch.is_tensor(dot) or not dot.requires_grad:
            return {n: torch.zeros_like(p) for n, p in params.items()}
        hv = torch.autograd.grad(dot, ps, allow_unused=True)
    return {n: (h.detach() if h is not None else torch.zeros_like(p)) for (n, p), h in zip(params.items(), hv)}


class GaussNewton:
    """Products with the generalised Gauss-Newton matrix of the mean loss over ``batches``,

    ``G = (1/m) sum_i J_i^T H_i J_i``, ``J_i = d z_i / d theta`` (the model's output, e.g.
    logits), ``H_i = d^2 l_i / d z_i^2`` (for softmax cross-entropy ``diag(p) - p p^T``),

    the positive semi-definite part of the Hessian (Schraudolph 2002; Martens 2010); it
    equals the Hessian for models linear in their parameters. The forward graphs are
    built once and reused by every product: each product is one Jacobian-vector product
    ``J v`` (computed as the derivative of a vector-Jacobian product with respect to its
    cotangent, no forward-mode AD needed) and one vector-Jacobian product ``J^T (H J v)``.
    ``H_i`` comes from the adapter's loss by automatic differentiation, so any loss of the
    outputs works. Holds the graphs of all ``batches``: keep them small.
    """

    def __init__(self, model: nn.Module, adapter, batches: list[dict], params: dict[str, nn.Parameter] | None = None):
        self.params = trainable(model) if params is None else params
        ps = list(self.params.values())
        self.m = sum(adapter.batch_size(b) for b in batches)
        self._parts = []
        with _eval(model):
            for batch in batches:
                batch = adapter.to_device(batch)
                z = adapter.logits(model, batch)
                u = torch.zeros_like(z, requires_grad=True)
                jtu = torch.autograd.grad(z, ps, grad_outputs=u, create_graph=True, allow_unused=True)
                zl = z.detach().requires_grad_(True)
                gz = torch.autograd.grad(
                    adapter.per_example_loss(model, batch, logits=zl).sum(), zl, create_graph=True
                )[0]
                self._parts.append((z, u, jtu, zl, gz))

    def __call__(self, vec: Params) -> Params:
        ps = list(self.params.values())
        out = {n: torch.zeros_like(p) for n, p in self.params.items()}
        for z, u, jtu, zl, gz in self._parts:
            dot = sum((g * vec[n]).sum() for n, g in zip(self.params, jtu) if g is not None)
            jv = torch.autograd.grad(dot, u, retain_graph=True)[0]
            hjv = torch.autograd.grad(gz, zl, grad_outputs=jv, retain_graph=True)[0]
            gv = torch.autograd.grad(z, ps, grad_outputs=hjv / self.m, retain_graph=True, allow_unused=True)
            for (n, t), g in zip(out.items(), gv):
                if g is not None:
                    t += g
        return out


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, max_iter: int = 10, tol: float = 1e-3
) -> tuple[torch.Tensor, int]:
    """Approximately solve ``A x = b`` for symmetric ``A`` given as ``matvec``, from ``x = 0``.

    Stops after ``max_iter`` products, when ``||r|| <= tol * ||b||``, or at a direction of
    non-positive curvature ``p^T A p <= 0`` (truncated CG, Steihaug 1983): then the iterate
    so far is returned, or ``b`` itself (``A`` taken as the identity) if the very first
    direction has non-positive curvature; this keeps the solve defined when a damped
    Hessian is still indefinite. Returns the solution and the number of products used.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r.dot(r)
    stop = (tol * b.norm()) ** 2
    for k in range(max_iter):
        if rs <= stop:
            return x, k
        ap = matvec(p)
        curv = p.dot(ap)
        if curv <= 0:
            return (x if k else b.clone()), k + 1
        a = rs / curv
        x = x + a * p
        r = r - a * ap
        rs_new = r.dot(r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x, max_iter


@torch.no_grad()
def add_to_parameters(params: dict[str, nn.Parameter], delta: Params, scale: float = 1.0) -> None:
    """``theta <- theta + scale * delta`` in place."""
    for n, p in params.items():
        p.add_(delta[n].to(p.dtype), alpha=scale)


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
