"""Linear logistic models trained to the exact minimiser of their L2-regularised objective.

The trainer behind ``TrainConfig(trainer="linear_optimum")``: full-batch L-BFGS on the
one-vs-rest logistic objective of Guo et al. 2020 (ICML), "Certified Data Removal from
Machine Learning Models", so that the original *and* the retrained reference are the
unique minimisers the certified-removal Newton update
(:mod:`unlearnkit.methods.certified`) is exact for. It sits beside the loop (not in
the methods layer) because tasks train their originals and references with it.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ExampleSet
from ..errors import ConfigError
from ..modalities.classifier.models import build_model
from ..utils import derive_seed
from .loop import LoopStats

#: Lipschitz constant of the logistic loss's second derivative used by the paper.
#: (The tight value is max |sigma'''| = 1/(6 sqrt 3) ~ 0.096; 1/4 is conservative.)
LOGISTIC_GAMMA = 0.25
DEFAULT_LAM = 1e-3


# ----------------------------------------------------------------------------- helpers
def linear_layer(model: nn.Module, data: ExampleSet | None = None) -> nn.Linear:
    """The ``nn.Linear`` of a linear model (``build_model('linear', ...)``); ConfigError otherwise.

    Accepts modules whose only leaf modules are one ``nn.Linear`` and any ``Flatten`` /
    ``Identity``, and (given ``data``) checks that ``model(x) == flatten(x) W^T + b``.
    """
    leaves = [m for m in model.modules() if not list(m.children())]
    linears = [m for m in leaves if isinstance(m, nn.Linear)]
    others = [type(m).__name__ for m in leaves if not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity))]
    if len(linears) != 1 or others:
        raise ConfigError(
            "certified_removal needs a linear model (one nn.Linear on flattened inputs, "
            "e.g. build_model('linear', ...) / --model linear); got "
            f"{len(linears)} linear layer(s) and {others or 'no'} other layers"
        )
    lin = linears[0]
    if data is not None and len(data):
        x = data.inputs[:8].to(lin.weight.device)
        with torch.no_grad():
            ok = torch.allclose(model(x), lin(x.flatten(1)), atol=1e-5, rtol=1e-4)
        if not ok:
            raise ConfigError(
                "certified_removal needs model(x) = flatten(x) W^T + b; this model's "
                "forward does something else: use build_model('linear', ...)"
            )
    return lin


def _design(data: ExampleSet) -> torch.Tensor:
    """Inputs flattened and augmented with a constant 1 (for the bias), float64."""
    x = data.inputs.flatten(1).double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


def _signs(data: ExampleSet, k: int) -> torch.Tensor:
    """One-vs-rest targets ``s_ik`` in {-1, +1}, shape (N, K)."""
    return 2.0 * F.one_hot(data.labels, k).double() - 1.0


def ovr_gradient(theta: torch.Tensor, x: torch.Tensor, s: torch.Tensor, lam: float, n_reg: int) -> torch.Tensor:
    """``grad_theta [sum_ik log(1 + exp(-s_ik z_ik)) + lam n_reg / 2 ||theta||^2]``, ``z = x theta^T``.

    ``theta``: (K, d+1); ``x``: (N, d+1); ``s``: (N, K). Returns (K, d+1).
    """
    z = x @ theta.T
    return (-s * torch.sigmoid(-s * z)).T @ x + lam * n_reg * theta


def ovr_hessians(theta: torch.Tensor, x: torch.Tensor, lam: float, n_reg: int) -> torch.Tensor:
    """Per-class Hessians ``x^T diag(sigma(z_k)(1 - sigma(z_k))) x + lam n_reg I``, shape (K, d+1, d+1)."""
    p = torch.sigmoid(x @ theta.T)  # (N, K)
    w = (p * (1 - p)).T  # (K, N)
    h = torch.einsum("kn,ni,nj->kij", w, x, x)
    return h + lam * n_reg * torch.eye(x.shape[1], dtype=x.dtype)


def _theta(lin: nn.Linear) -> torch.Tensor:
    b = lin.bias if lin.bias is not None else torch.zeros(lin.out_features, device=lin.weight.device)
    return torch.cat([lin.weight.detach(), b.detach()[:, None]], dim=1).double().cpu()


def _set_theta(lin: nn.Linear, theta: torch.Tensor) -> None:
    if lin.bias is None:
        raise ConfigError("certified_removal needs a linear layer with a bias")
    with torch.no_grad():
        lin.weight.copy_(theta[:, :-1].to(lin.weight))
        lin.bias.copy_(theta[:, -1].to(lin.bias))


# ----------------------------------------------------------------------------- training
def train_linear_optimum(
    data,
    lam: float = DEFAULT_LAM,
    sigma: float = 0.0,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-10,
    model: nn.Module | None = None,
) -> tuple[nn.Module, LoopStats]:
    """Train a linear model to the minimiser of the one-vs-rest objective (Guo et al. 2020).

    Minimises ``sum_{i,k} log(1 + exp(-s_ik z_ik)) + lam n / 2 ||theta||^2 + b^T theta``
    over ``theta = (W, bias)`` with full-batch L-BFGS (strong Wolfe line search) in
    float64 from zero, which is deterministic; the problem is strongly convex, so the
    minimiser is unique. ``b ~ N(0, sigma^2 I)`` (drawn from ``seed``) is the paper's
    objective perturbation (Algorithm 1); ``sigma = 0`` means none.

    Args:
        data: an ExampleSet (a fresh ``build_model('linear', ...)`` is trained on it), or a
            Task (its training set, on a fresh model from its factory, which must be linear).
        lam: L2 strength lambda (per example: the penalty is ``lam n / 2 ||theta||^2``).
        tol: stop when ``||grad||_inf`` of the per-example objective (divided by n) is below.
        model: the linear model to train in place (default: a fresh one, see ``data``).

    Returns:
        ``(model, cost)``: the model in eval mode; cost counts L-BFGS iterations as steps and
        every function evaluation as a forward and backward pass over the data.
    """
    if lam <= 0 or sigma < 0:
        raise ConfigError("train_linear_optimum: lam must be > 0 and sigma >= 0")
    if isinstance(data, ExampleSet):
        train = data
        if model is None:
            model = build_model("linear", data.input_shape, int(data.num_classes))
    else:  # a Task
        train = data.train
        if model is None:
            model = data.model_factory(data.seed)
    lin = linear_layer(model, train)
    t0 = time.perf_counter()
    x, s, n = _design(train), _signs(train, lin.out_features), len(train)
    gen = torch.Generator().manual_seed(derive_seed(seed, "objective-perturbation") % (2**63))
    b = sigma * torch.randn(lin.out_features, x.shape[1], generator=gen, dtype=torch.float64)
    theta = torch.zeros(lin.out_features, x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-14,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:  # the objective divided by n, for conditioning
        opt.zero_grad()
        z = x @ theta.T
        f = (F.softplus(-s * z).sum() + 0.5 * lam * n * theta.pow(2).sum() + (b * theta).sum()) / n
        f.backward()
        return f

    opt.step(closure)
    state = opt.state[theta]
    evals = int(state.get("func_evals", 1))
    stats = LoopStats(
        steps=int(state.get("n_iter", 1)),
        examples_forward=evals * n,
        examples_backward=evals * n,
        final_loss=float(closure().detach()),
        wall_time_s=time.perf_counter() - t0,
    )
    _set_theta(lin, theta.detach())
    return model.eval(), stats
