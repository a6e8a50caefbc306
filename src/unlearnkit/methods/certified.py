"""Certified removal for L2-regularised linear logistic regression (Guo et al. 2020).

Guo, Goldstein, Hannun & van der Maaten 2020 (ICML), "Certified Data Removal from
Machine Learning Models". For a linear model ``w`` trained to the minimiser ``w*`` of

    L(w; D) = sum_{i in D} l(w^T x_i, y_i) + (lambda n / 2) ||w||^2        (n = |D|)

removing a set ``D_f`` of ``m`` examples is one Newton step on the retain objective
``L(.; D')``, ``D' = D \\ D_f``:

    Delta = lambda m w* + sum_{i in D_f} grad l(w*^T x_i, y_i)     (= grad L(w*; D) - grad L(w*; D'))
    H     = hess L(w*; D') = sum_{i in D'} l''(w*^T x_i, y_i) x_i x_i^T + lambda (n - m) I
    w-    = w* + H^{-1} Delta

(Algorithm 1 and Eq. 3 of the paper, batch removal as in its Section 3.2). The update
is exact up to the curvature change along the step; Corollary 1 bounds what is left
of the retain objective's gradient (the *gradient residual*):

    ||grad L(w-; D')|| <= gamma ||X'||_2 ||H^{-1} Delta|| ||X' H^{-1} Delta||

with ``X'`` the retain design matrix, ``gamma`` the Lipschitz constant of ``l''``
(the paper takes ``gamma = 1/4`` for the logistic loss) and ``||x_i|| <= 1``. We do
not rescale inputs, so the bound is reported with the factor ``R = max_i ||x_i||``
the proof needs when ``||x_i|| <= 1`` does not hold (``R = 1`` gives the paper's
formula exactly).

Certification (Theorem 3): if the original minimised the *perturbed* objective
``L(w; D) + b^T w`` with ``b ~ N(0, sigma^2 I)`` and the residual is at most
``eps'``, the removal is (eps, delta)-certified with ``eps = c eps' / sigma``,
``c = sqrt(2 log(1.5 / delta))``. :func:`train_linear_optimum` trains with that
noise when ``sigma > 0`` (``TrainConfig(trainer="linear_optimum", objective_noise=sigma)``
gives every model a task trains, shadow models included, its own ``b``); the method's
``sigma`` (by default the recipe's) is only used to report ``eps``
(``b`` cancels from ``Delta`` and ``H``, so the update itself does not need it).

Departures and choices:

* multi-class: one-vs-rest. Class ``k`` is its own binary problem on labels
  ``s_ik = +1 if y_i = k else -1`` with parameters ``(W_k, b_k)`` (the row of the
  ``nn.Linear`` and its bias, the bias regularised like the weights, inputs
  augmented with a constant 1). The objective is the sum of the K binary objectives,
  so every statement above holds per class; the update uses one Hessian per class
  and the reported residual and bound are the Euclidean norms over all classes.
  Predictions are ``argmax_k`` of the K scores, i.e. the same ``nn.Linear``.
* the original must be the minimiser: with ``sigma = 0`` the method checks
  ``||grad L(w*; D)|| / n <= optimum_tol`` and raises :class:`ConfigError` otherwise
  (a model trained by SGD/Adam with weight decay is not it; train it with
  :func:`train_linear_optimum`). With ``sigma > 0``, ``b`` is recovered from the
  optimality condition ``b = -grad L(w*; D)`` and cannot be checked.
* ``newton_steps > 1`` (Zou, Auddy, Kwon, Rahnama Rad & Maleki 2025, "Certified Data
  Removal Under High-dimensional Settings", arXiv 2505.07640: a sequence of Newton steps,
  two of which suffice in their high-dimensional analysis): after the first update,
  ``w_{t+1} = w_t - H_t^{-1} grad L_b(w_t; D')`` with ``H_t`` the retain Hessian at ``w_t``. Corollary 1's argument (a Lipschitz Hessian along
  one Newton step) bounds the residual of the *last* step the same way, with ``H_t^{-1}
  grad L_b(w_t; D')`` in place of ``H^{-1} Delta``; that is the bound reported. The steps stop
  early once ``max |grad L_b(w_t; D')| / |D'| <= newton_tol``, the rule
  :func:`train_linear_optimum` stops by, so the result is as converged as a retrain. The bound
  assumes exact arithmetic: epsilon uses the larger of it and the measured residual (which
  wins once the steps reach float64 rounding). Zou et al. add Laplace output noise; we keep
  Guo et al.'s objective perturbation.
* no removal budget bookkeeping across requests (the paper retrains when the summed
  residual bounds exceed the budget): each call reports its own bound and epsilon.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..engines.linear import (
    DEFAULT_LAM,
    LOGISTIC_GAMMA,
    _design,
    _set_theta,
    _signs,
    _theta,
    linear_layer,
    ovr_gradient,
    ovr_hessians,
    train_linear_optimum,
)
from ..engines.loop import LoopStats
from ..errors import ConfigError
from .base import Method, hp, register

__all__ = ["CertifiedRemoval", "train_linear_optimum", "linear_layer", "ovr_gradient", "ovr_hessians"]


# ----------------------------------------------------------------------------- method
@dataclass
class CertifiedParams:
    lam: float | None = hp(
        None,
        "L2 strength lambda of the objective (penalty lam*n/2*||theta||^2); "
        "must be the one the original was trained with (default: the task "
        "recipe's weight_decay when its trainer is linear_optimum, else 1e-3)",
    )
    sigma: float | None = hp(
        None,
        "std of the objective-perturbation noise the original was trained "
        "with (default: the task recipe's objective_noise when its trainer "
        "is linear_optimum, else 0); 0 = none (no epsilon certificate)",
    )
    delta: float = hp(1e-5, "delta of the reported (epsilon, delta) certificate")
    newton_steps: int = hp(
        1,
        "at most this many Newton steps on the retain objective: 1 is Guo et al.'s "
        "update; more (Zou et al. 2025) shrink the residual when many points go at once",
    )
    newton_tol: float = hp(
        1e-10,
        "stop the Newton steps once max|grad L_b(theta; D')| / |D'| is at most this "
        "(train_linear_optimum's own convergence rule)",
    )
    optimum_tol: float = hp(
        1e-4, "largest ||grad L(theta; D)||/n accepted as 'the original is the minimiser' (checked when sigma = 0)"
    )


@register
class CertifiedRemoval(Method):
    """A Newton step (or a few) removes the forget set from an L2-regularised linear logistic model.

    Guo et al. 2020: ``theta_u = theta* + H^{-1} Delta``, ``Delta = lambda m theta* +
    sum_{D_f} grad l``, ``H`` the Hessian of the retain objective at ``theta*``; one-vs-rest
    for several classes (see the module docstring for the formulas, the gradient-residual
    bound of Corollary 1 and the epsilon of Theorem 3). Needs a linear model trained to
    the objective's minimiser (:func:`train_linear_optimum`); any other model raises
    ConfigError. ``newton_steps > 1`` adds further Newton steps on the retain objective
    (Zou et al. 2025). ``extra`` reports ``newton_steps_taken``, ``gradient_residual_norm``
    (``||grad L_b(theta_u; D')||``, measured), ``gradient_residual_bound`` (Corollary 1, of
    the last step), ``original_gradient_norm`` (``||grad L(theta*; D)||``, 0 at the
    minimiser), ``removal_gradient_norm`` (``||Delta||``, the residual had nothing been
    done) and ``certified_epsilon`` (inf when ``sigma = 0``).
    """

    name = "certified_removal"
    Params = CertifiedParams
    citation = (
        "Guo, Goldstein, Hannun & van der Maaten 2020 (ICML), 'Certified Data Removal from "
        "Machine Learning Models', Algorithm 1, Eq. 3, Corollary 1, Theorem 3"
    )
    exact = False
    needs_retain = True
    contract_exempt = dict.fromkeys(
        ("changes_model", "deterministic", "step_budget", "moves_forget", "divergence", "cost_accounting"),
        "needs a linear model at the minimiser of its L2-regularised objective; the contract task is an "
        "Adam-trained MLP (tests/test_certified.py checks these on a linear task)",
    )

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        result = super().unlearn(task, seed, progress)
        result.extra.update(self._report)
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        lam = p.lam
        if lam is None:
            lam = task.recipe.weight_decay if task.recipe.trainer == "linear_optimum" else DEFAULT_LAM
        sigma = p.sigma
        if sigma is None:
            sigma = task.recipe.objective_noise if task.recipe.trainer == "linear_optimum" else 0.0
        p = dataclasses.replace(p, lam=lam, sigma=sigma)
        if p.lam <= 0 or p.sigma < 0 or not 0 < p.delta < 1 or p.newton_steps < 1:
            raise ConfigError("certified_removal: lam must be > 0, sigma >= 0, delta in (0, 1) and newton_steps >= 1")
        lin = linear_layer(model, task.train)
        k = lin.out_features
        theta = _theta(lin)
        xr, sr = _design(task.retain), _signs(task.retain, k)
        xf, sf = _design(task.forget), _signs(task.forget, k)
        n, m = len(task.retain) + len(task.forget), len(task.forget)
        # b of the perturbed objective, from its optimality condition grad L(theta; D) + b = 0
        grad_full = ovr_gradient(theta, torch.cat([xr, xf]), torch.cat([sr, sf]), p.lam, n)
        g0 = float(grad_full.norm())
        if p.sigma == 0 and g0 / n > p.optimum_tol:
            raise ConfigError(
                f"certified_removal: the original is not the minimiser of the lam={p.lam:g} objective "
                f"(||grad||/n = {g0 / n:.2e} > optimum_tol={p.optimum_tol:g}); train it with "
                "unlearnkit.methods.certified.train_linear_optimum(task, lam) and the same lam"
            )
        b = -grad_full
        delta = ovr_gradient(theta, xf, sf, p.lam, m)  # sum of forget-loss gradients + lam m theta
        hess = ovr_hessians(theta, xr, p.lam, len(task.retain))
        step = torch.linalg.solve(hess, delta.unsqueeze(-1)).squeeze(-1)  # (K, d+1): H_k^{-1} Delta_k
        theta_u = theta + step
        n_r = len(task.retain)
        taken = 1
        for _ in range(p.newton_steps - 1):  # further Newton steps on the perturbed retain objective
            grad_r = ovr_gradient(theta_u, xr, sr, p.lam, n_r) + b
            if float(grad_r.abs().max()) / n_r <= p.newton_tol:
                break  # as converged as train_linear_optimum's own stopping rule
            taken += 1
            hess = ovr_hessians(theta_u, xr, p.lam, n_r)
            step = -torch.linalg.solve(hess, grad_r.unsqueeze(-1)).squeeze(-1)
            theta_u = theta_u + step
        _set_theta(lin, theta_u)
        # Corollary 1 per class, with R = max ||x_i|| (R = 1 in the paper), for the last step
        xs = xr @ step.T  # (N', K): X' H^{-1} Delta per class
        r = float(xr.norm(dim=1).max())
        bound = (LOGISTIC_GAMMA * r * torch.linalg.matrix_norm(xr, ord=2) * step.norm(dim=1) * xs.norm(dim=0)).norm()
        residual = ovr_gradient(theta_u, xr, sr, p.lam, len(task.retain)) + b
        c = math.sqrt(2 * math.log(1.5 / p.delta))
        # the bound assumes exact arithmetic; once the steps reach float64 rounding the
        # measured residual is the larger, so epsilon uses whichever is larger
        eps_prime = max(float(bound), float(residual.norm()))
        self._report = {
            "newton_steps_taken": taken,
            "gradient_residual_norm": float(residual.norm()),
            "gradient_residual_bound": float(bound),
            "original_gradient_norm": g0,
            "removal_gradient_norm": float(delta.norm()),
            "certified_epsilon": c * eps_prime / p.sigma if p.sigma > 0 else math.inf,
            "delta": p.delta,
        }
        # one pass over D at theta* (gradient, Hessian on D'), one over D' per further step and
        # one at theta_u (residual)
        passes = n + taken * n_r + (taken < p.newton_steps) * n_r
        return LoopStats(steps=taken, examples_forward=passes, examples_backward=passes)
