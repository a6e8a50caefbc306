"""The reasoning-model unlearning attack: deletion requests chosen so that *exact* unlearning
(retraining without them) makes a model answer target questions wrongly, with plausible traces.

Seed: "Towards Unveiling Vulnerabilities of Large Reasoning Models in Machine Unlearning"
(2025). Only its abstract was available here (no text of the paper in the stored corpora), so
the formulas below are this module's reading of the abstract's three parts (a bi-level exact
unlearning attack with a differentiable objective, influential token alignment and a relaxed
indicator), at toy scale, on the generated chains of :mod:`unlearnkit.data.reasoning`.

The bi-level problem. ``D`` the training examples, ``S ⊂ D`` the deletion requests (``|S| <= k``),
``θ*(D \\ S)`` the model retrained without them (the inner problem: the ``retrain`` method, the
exact answer that :func:`~unlearnkit.orchestration.experiment.get_reference` and the service's
escalation run),
``q_j`` the target questions with correct traces ``τ*_j`` and attacker-chosen wrong traces
``τ'_j``::

    min_S  (1/J) Σ_j L_j(θ*(D \\ S))   s.t. |S| <= k

The differentiable objective with influential token alignment (per target, token log-probs
``log p_θ(y_t | q, y_<t)`` under teacher forcing; ``I'`` the positions of ``τ'`` that differ
from ``τ*`` at the same place (the corrupted step's result and everything it changes
downstream, final answer included), ``I*`` those of ``τ*``, ``P`` the other, shared, tokens of
``τ'``)::

    L_j(θ) = mean_{t∈I'} -log p_θ(τ'_t)                      make the wrong steps likely
           + γ mean_{t∈I*} -log(1 - p_θ(τ*_t))               the correct ones unlikely (unlikelihood,
                                                             Welleck et al. 2019: bounded, unlike +log p)
           + λ mean_{t∈P} -log p_θ(τ'_t)                      keep the rest of the trace plausible

The loss sits on the few tokens that decide the answer, not on the whole rationale (the
abstract's "weak optimization effect over long rationales"). The wrong trace itself is the
model's own: the step ``s`` and value to corrupt are the runner-up digit of one step's result
under the model, and the steps after it are the model's greedy continuation of that prefix (so
the trace is as plausible as the model can make it); of each target's steps, the one whose
corruption the deletion budget is predicted to achieve best is kept.

The relaxed indicator. The indicator ``1[i∈S]`` is relaxed to ``w ∈ [0,1]^n`` with ``Σ w = k``,
and retraining is replaced by its first-order (influence) approximation: training on example
``i`` contributed about ``-η ∇ℓ_i`` to the weights (``η`` = mean learning rate × epochs / batch
size of the recipe: one step per epoch, the example's share ``1/B`` of the batch mean), so
removing the weighted set moves them by::

    θ(w) = θ_0 + η Σ_i w_i ∇ℓ_i(θ_0)

with ``ℓ_i`` the training loss (answer-token NLL) of example ``i`` at the original ``θ_0``.
``w`` is optimised by projected gradient descent on ``L(θ(w))`` (gradient
``∂L/∂w_i = η ∇ℓ_i(θ_0) · ∇_θ L(θ(w))``: one backward of the outer loss per step), projected
onto the capped simplex ``{w ∈ [0,1]^n, Σ w = k}``, and rounded to the ``k`` largest weights.
At ``w = k/n`` the first step ranks examples by gradient alignment ``-∇ℓ_i · ∇L`` (TracIn-style,
Pruthi et al. 2020, at the last checkpoint only); later steps account for the
non-linearity of ``L`` in the weights.

White-box: gradients of the deployed model. Black-box (query-only): the attacker trains a
surrogate with the public recipe on the same training data but its own seed (it sees neither
the victim's weights nor gradients), runs the same optimisation on the surrogate and sends
the resulting requests to the victim (transfer). Baseline: ``k`` deletions drawn at random.

Departures, said plainly: the paper's own objective, token-selection rule, relaxation and
black-box optimiser are not known here (abstract only); the influence approximation uses the
final weights' gradients without a Hessian (identity preconditioner), and at the recipe's ``η``
the projected-gradient steps barely move the linearised objective, so the rounded set is close
to the first-order alignment ranking; larger ``η`` lowers that objective much more without
removing more of the corrupted facts' training support (measured:
``benchmarks/results/reasoning_attack_eta.md``), which points at the linearisation, not the optimiser, as the
limit. The attack is run at toy
scale (a 2-layer Llama on generated function chains), where "plausible" is checkable exactly
(:func:`~unlearnkit.data.reasoning.parse_trace`: well-formed, chained steps that apply the
question's functions in order).

Whether the deletion-request service would notice: the service's gate is passed in as a callable
(this layer imports no service code): :func:`unlearnkit.service.reasoning_gate.gate_verdict` runs the service's own
parts on each retrained model (the line policy, :class:`~unlearnkit.service.policy.Check`,
:func:`~unlearnkit.service.core.canary_measures`) as ``Service._verify`` does. For an exact
answer the candidate *is* the reference, so the checks relative to the reference compare a model
with itself; what can stop such a request is the per-request size limit (refused) and the
canary's deletion effect (held for a person's decision): ``caught`` is either of those.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.reasoning import ReasoningData, final_answer, parse_trace, trace_matches_question
from ..errors import ConfigError, DataError


@dataclass
class AttackConfig:
    """Hyperparameters of the attack.

    Attributes:
        budget: ``k``, the number of deletion requests (training examples removed).
        steps: projected-gradient steps on the relaxed indicator.
        lr: step size on ``w`` (the gradient is scaled to a largest entry of 1).
        unlikelihood_weight: ``γ``; plausibility_weight: ``λ`` (see the module docstring).
        influence_scale: ``η``; None: mean learning rate × epochs / batch size of the recipe.
        max_new_tokens: the longest trace decoded.
    """

    budget: int = 20
    steps: int = 40
    lr: float = 0.2
    unlikelihood_weight: float = 1.0
    plausibility_weight: float = 0.5
    influence_scale: float | None = None
    max_new_tokens: int = 48

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget must be an integer >= 1, not {self.budget!r}")
        if self.steps < 0 or not self.lr > 0:
            raise ConfigError("steps must be >= 0 and lr > 0")
        if self.unlikelihood_weight < 0 or self.plausibility_weight < 0:
            raise ConfigError("unlikelihood_weight and plausibility_weight must be >= 0")
        if self.influence_scale is not None and not self.influence_scale > 0:
            raise ConfigError("influence_scale must be > 0 (or None for the recipe's)")


# --------------------------------------------------------------------------- the relaxed indicator
def project_capped_simplex(v: torch.Tensor, k: float, iters: int = 60) -> torch.Tensor:
    """Euclidean projection of ``v`` onto ``{w ∈ [0,1]^n : Σ w = k}`` (bisection on the shift
    ``τ`` of ``clip(v - τ, 0, 1)``, whose sum falls monotonically in ``τ``)."""
    n = v.numel()
    if not 0 <= k <= n:
        raise ConfigError(f"the budget {k} must be between 0 and the number of candidates {n}")
    lo, hi = float(v.min()) - 1.0, float(v.max())
    for _ in range(iters):
        mid = (lo + hi) / 2
        if float((v - mid).clamp(0, 1).sum()) > k:
            lo = mid
        else:
            hi = mid
    return (v - (lo + hi) / 2).clamp(0, 1)


@dataclass
class IndicatorResult:
    """What :func:`relaxed_indicator` found: ``weights`` (final ``w``), ``chosen`` (positions of the
    ``k`` largest), ``alignment`` (the first-order scores ``-η ∇ℓ_i·∇L`` at the start: higher =
    deleting ``i`` lowers the objective more), ``objective`` (``L(θ(w))`` at each step) and
    ``predicted`` (``L`` at the rounded set's ``θ(1_S)``)."""

    weights: torch.Tensor
    chosen: list[int]
    alignment: torch.Tensor
    objective: list[float]
    predicted: float


def relaxed_indicator(
    example_grads: torch.Tensor,
    objective: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    budget: int,
    influence_scale: float,
    steps: int = 40,
    lr: float = 0.2,
) -> IndicatorResult:
    """Optimise the relaxed deletion indicator (module docstring) for any model.

    Args:
        example_grads: ``(n, P)`` training-loss gradients ``∇ℓ_i(θ_0)`` of the candidates.
        objective: ``δ -> (L(θ_0 + δ), ∇_θ L(θ_0 + δ))`` for a flat parameter shift ``δ`` (P,).
        budget: ``k``; influence_scale: ``η``; steps, lr: projected gradient descent on ``w``.
    """
    n = example_grads.shape[0]
    if not 1 <= budget <= n:
        raise ConfigError(f"budget must be between 1 and the {n} candidates, not {budget}")
    grads = example_grads.float()
    w = torch.full((n,), budget / n)
    history = []
    alignment = None
    for _ in range(max(1, steps)):
        loss, g = objective(influence_scale * (w @ grads))
        history.append(float(loss))
        gw = influence_scale * (grads @ g.float())  # ∂L/∂w_i
        if alignment is None:
            alignment = -gw
        if steps == 0:
            break
        w = project_capped_simplex(w - lr * gw / gw.abs().max().clamp_min(1e-12), budget)
    # ties (e.g. no step taken) fall back on the first-order alignment
    order = sorted(range(n), key=lambda i: (-float(w[i]), -float(alignment[i])))
    chosen = sorted(order[:budget])
    rounded = torch.zeros(n)
    rounded[chosen] = 1.0
    predicted = float(objective(influence_scale * (rounded @ grads))[0])
    return IndicatorResult(w, chosen, alignment, history, predicted)


# --------------------------------------------------------------------------- flat parameters
def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in _params(model)])


def training_gradients(model: nn.Module, data, adapter) -> torch.Tensor:
    """``(n, P)``: each example's training-loss gradient ``∇ℓ_i`` at ``model``'s weights (its mean
    answer-token NLL, the loss the recipe trains), in ``data``'s order."""
    model.eval()  # no dropout in the tiny Llama; eval keeps any other model deterministic
    rows = []
    for batch in data.batches(1):
        model.zero_grad(set_to_none=True)
        adapter.per_example_loss(model, adapter.to_device(batch)).sum().backward()
        rows.append(_flat_grad(model).detach().cpu())
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def shifted_objective(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]):
    """``δ -> (loss_fn(θ_0 + δ), ∇)`` on a scratch copy of ``model`` (the model is not changed)."""
    scratch = copy.deepcopy(model).eval()
    base = [p.detach().clone() for p in _params(scratch)]

    def objective(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            at = 0
            for p, b in zip(_params(scratch), base):
                p.copy_(b + delta[at : at + p.numel()].view_as(p).to(p.device))
                at += p.numel()
        scratch.zero_grad(set_to_none=True)
        loss = loss_fn(scratch)
        loss.backward()
        return loss.detach().cpu(), _flat_grad(scratch).detach().cpu()

    return objective


# --------------------------------------------------------------------------- targets and the outer loss
@dataclass
class AttackTarget:
    """One target question: its correct trace, the attacker's wrong trace, the corrupted step."""

    example_id: str
    question: str
    trace: str
    wrong_trace: str
    step: int
    answer: int | None
    wrong_answer: int | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _encode(task, question: str, answer: str):
    from ..modalities.causal_lm.adapter import encode_qa

    rows = [{"example_id": "target", "question": question, "answer": answer}]
    es = encode_qa(rows, task.adapter.tokenizer, 4096, chat_template=task.train.meta.get("template"))
    return task.adapter.to_device(next(es.batches(1)))


def _result_positions(task, question: str, trace: str) -> list[int]:
    """Sequence positions (in the encoded ``question`` + ``trace``) of each step's result digit."""
    from ..modalities.causal_lm.adapter import DEFAULT_TEMPLATE

    tok = task.adapter.tokenizer
    template = task.train.meta.get("template") or DEFAULT_TEMPLATE
    n_prompt = len(tok(template.format(question=question), add_special_tokens=False)["input_ids"])
    full = tok(" " + trace, add_special_tokens=False)["input_ids"]
    out, at = [], 0
    while (at := trace.find(")=", at)) >= 0:
        c = at + 2
        pre = tok(" " + trace[:c], add_special_tokens=False)["input_ids"]
        if full[: len(pre)] != pre:
            raise ConfigError("the attack needs a tokenizer whose tokens of a trace prefix are a prefix (bytes)")
        out.append(n_prompt + len(pre))
        at = c
    return out


@torch.no_grad()
def _greedy(model: nn.Module, task, prompt_ids: list[int], max_new_tokens: int) -> str:
    from ..modalities.causal_lm.scores import decode_batch

    tok = task.adapter.tokenizer
    out = decode_batch(
        model, [torch.tensor(prompt_ids)], tok.pad_token_id, tok.eos_token_id, max_new_tokens, task.device
    )[0]
    return tok.decode([t for t in out if t != tok.eos_token_id], skip_special_tokens=True)


def greedy_traces(model: nn.Module, task, questions: Sequence[str], max_new_tokens: int = 48) -> list[str]:
    """The model's greedy answers (traces) to ``questions`` under the task's template."""
    from ..modalities.causal_lm.adapter import encode_qa
    from ..modalities.causal_lm.scores import generate_answers

    rows = [{"example_id": f"q{i}", "question": q, "answer": "?"} for i, q in enumerate(questions)]
    es = encode_qa(rows, task.adapter.tokenizer, 4096, chat_template=task.train.meta.get("template"))
    model.eval()
    return [t.strip() for t in generate_answers(model, es, task.adapter.tokenizer, task.device, 32, max_new_tokens)]


def wrong_trace_at(model: nn.Module, task, question: str, trace: str, step: int, max_new_tokens: int = 48) -> str:
    """The attacker's wrong trace corrupting step ``step``: the trace up to that step's result,
    the model's most likely *other* digit there, then the model's greedy continuation."""
    tok = task.adapter.tokenizer
    pos = _result_positions(task, question, trace)[step]
    batch = _encode(task, question, trace)
    model.eval()
    with torch.no_grad():
        logits = task.adapter.logits(model, batch)[0, pos - 1].float()
    digits = {d: tok(str(d), add_special_tokens=False)["input_ids"] for d in range(10)}
    at = _nth(trace, ")=", step) + 2
    correct = int(trace[at])
    scores = {d: float(logits[ids[0]]) for d, ids in digits.items() if len(ids) == 1 and d != correct}
    wrong = max(scores, key=scores.get)
    prefix = trace[:at] + str(wrong)
    prompt = batch["input_ids"][0, :pos].tolist() + tok(str(wrong), add_special_tokens=False)["input_ids"]
    return prefix + _greedy(model, task, prompt, max_new_tokens)


def _nth(text: str, sub: str, n: int) -> int:
    at = -1
    for _ in range(n + 1):
        at = text.find(sub, at + 1)
        if at < 0:
            raise DataError(f"the trace has fewer than {n + 1} steps: {text!r}")
    return at


@dataclass
class _EncodedTarget:
    wrong: dict
    correct: dict
    infl_wrong: torch.Tensor
    infl_correct: torch.Tensor
    plausible: torch.Tensor


def _encode_target(task, t: AttackTarget) -> _EncodedTarget:
    """Both traces encoded, with the influential-token masks (aligned by position from the
    answer's start; where the lengths differ, every position from the first difference on)."""
    bw, bc = _encode(task, t.question, t.wrong_trace), _encode(task, t.question, t.trace)
    lw, lc = bw["labels"][0], bc["labels"][0]
    aw, ac = (lw != -100).nonzero()[:, 0], (lc != -100).nonzero()[:, 0]
    if len(aw) == 0 or len(ac) == 0 or int(aw[0]) != int(ac[0]):
        raise DataError(f"target {t.example_id}: the traces do not start at the same position")
    start = int(aw[0])
    yw, yc = lw[start : start + len(aw)], lc[start : start + len(ac)]
    m = min(len(yw), len(yc))
    diff = (yw[:m] != yc[:m]).nonzero()
    if len(diff) == 0 and len(yw) == len(yc):
        raise DataError(f"target {t.example_id}: the wrong trace equals the correct one")
    first = int(diff[0]) if len(diff) else m
    same_len = len(yw) == len(yc)
    iw, ic = torch.zeros_like(lw, dtype=torch.float), torch.zeros_like(lc, dtype=torch.float)
    for j in range(first, len(yw)):
        iw[start + j] = float(not same_len or bool(yw[j] != yc[j]))
    for j in range(first, len(yc)):
        ic[start + j] = float(not same_len or bool(yc[j] != yw[j]))
    plausible = (lw != -100).float() - iw
    return _EncodedTarget(bw, bc, iw[None], ic[None], plausible.clamp_min(0)[None])


def outer_loss(model: nn.Module, adapter, targets: Sequence[_EncodedTarget], cfg: AttackConfig) -> torch.Tensor:
    """``(1/J) Σ_j L_j(θ)`` of the module docstring."""
    total = 0.0
    for e in targets:
        lw, _ = adapter.token_log_probs(model, e.wrong)
        lc, _ = adapter.token_log_probs(model, e.correct)
        iw, ic, pl = (x.to(lw.device) for x in (e.infl_wrong, e.infl_correct, e.plausible))
        nll = -(lw * iw).sum() / iw.sum().clamp_min(1)
        unlikely = -(torch.log1p(-lc.exp().clamp(max=1 - 1e-6)) * ic).sum() / ic.sum().clamp_min(1)
        plaus = -(lw * pl).sum() / pl.sum().clamp_min(1)
        total = total + nll + cfg.unlikelihood_weight * unlikely + cfg.plausibility_weight * plaus
    return total / max(1, len(targets))


def influence_scale_of(recipe) -> float:
    """``η``: the mean learning rate (half the peak under a cosine schedule) × epochs / batch size."""
    mean_lr = recipe.lr / 2 if recipe.schedule == "cosine" else recipe.lr
    return float(mean_lr * recipe.epochs / recipe.batch_size)


@dataclass
class AttackPlan:
    """The attacker's deletion requests and what it aimed at."""

    deletion_ids: list[str]
    targets: list[AttackTarget]
    indicator: IndicatorResult
    setting: str  # "white-box" or "black-box (surrogate)"

    def to_dict(self) -> dict:
        return {
            "setting": self.setting,
            "deletion_ids": list(self.deletion_ids),
            "targets": [t.to_dict() for t in self.targets],
            "objective_start": self.indicator.objective[0],
            "objective_end": self.indicator.objective[-1],
            "objective_predicted_rounded": self.indicator.predicted,
        }


def plan_attack(
    model: nn.Module, task, targets: Sequence[dict], cfg: AttackConfig, setting: str = "white-box"
) -> AttackPlan:
    """Choose ``cfg.budget`` training examples of ``task`` to delete against ``targets`` (rows with
    ``example_id``, ``question``, ``answer``: the correct trace), with ``model``'s gradients (the
    victim's: white-box; a surrogate's: black-box)."""
    if not targets:
        raise ConfigError("the attack needs at least one target question")
    if cfg.budget > len(task.train):
        raise ConfigError(f"budget {cfg.budget} exceeds the {len(task.train)} training examples")
    eta = cfg.influence_scale or influence_scale_of(task.recipe)
    grads = training_gradients(model, task.train, task.adapter)
    per_target = max(1, cfg.budget // len(targets))
    chosen_targets: list[AttackTarget] = []
    for row in targets:
        trace = row["answer"]
        n_steps = len(_result_positions(task, row["question"], trace))
        if n_steps == 0:
            raise DataError(f"target {row['example_id']}: its trace has no step to corrupt")
        best = None
        for s in range(n_steps):
            wrong = wrong_trace_at(model, task, row["question"], trace, s, cfg.max_new_tokens)
            t = AttackTarget(
                row["example_id"], row["question"], trace, wrong, s, final_answer(trace), final_answer(wrong)
            )
            if t.wrong_answer == t.answer:  # the corruption does not change the answer: not an attack
                continue
            enc = _encode_target(task, t)
            obj = shifted_objective(model, lambda m, enc=enc: outer_loss(m, task.adapter, [enc], cfg))
            # the influential step: the one whose corruption k/J deletions are predicted to achieve best
            res = relaxed_indicator(grads, obj, per_target, eta, steps=0)
            if best is None or res.predicted < best[0]:
                best = (res.predicted, t, enc)
        if best is None:
            raise DataError(f"target {row['example_id']}: no corrupted step changes its final answer")
        chosen_targets.append(best[1])
    encs = [_encode_target(task, t) for t in chosen_targets]
    obj = shifted_objective(model, lambda m: outer_loss(m, task.adapter, encs, cfg))
    res = relaxed_indicator(grads, obj, cfg.budget, eta, steps=cfg.steps, lr=cfg.lr)
    ids = [str(task.train.example_ids[i]) for i in res.chosen]
    return AttackPlan(ids, chosen_targets, res, setting)


# --------------------------------------------------------------------------- tasks, retraining, the gate
class MemoryCache:
    """An in-process :class:`~unlearnkit.task.ModelCache` (state dicts by key), so each deletion
    request's task reuses the trained original and a repeated deletion set its retrain."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[dict, dict]] = {}

    def get(self, key: str, model: nn.Module) -> dict | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        model.load_state_dict(hit[0])
        return copy.deepcopy(hit[1])

    def put(self, key: str, model: nn.Module, info: dict) -> None:
        self._items[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, copy.deepcopy(info))


@dataclass
class ReasoningSetup:
    """How the victim's tasks are built: the data folder, the model sizes, the recipe, the seed."""

    folder: Path
    data: ReasoningData
    model: dict
    recipe: object
    seed: int = 0
    retain_eval_size: int = 40
    cache: MemoryCache = field(default_factory=MemoryCache)

    def task(self, deletion_ids: Sequence[str] | None = None):
        """The causal-LM task whose forget set is ``deletion_ids`` (the original is trained once,
        then taken from the cache); without ids, a placeholder forget set of one example."""
        from ..modalities.causal_lm.task import make_lm_task

        ids = list(deletion_ids) if deletion_ids else [self.data.train[0]["example_id"]]
        return make_lm_task(
            str(self.folder),
            forget={"ids": ids},
            seed=self.seed,
            tokenizer="bytes",
            model=self.model,
            recipe=self.recipe,
            retain_eval_size=self.retain_eval_size,
            cache=self.cache,
        )


def exact_unlearning(setup: ReasoningSetup, deletion_ids: Sequence[str]):
    """The inner problem: the task forgetting ``deletion_ids`` and its exact answer, the
    ``retrain`` method (retraining on the retain set with the original's recipe, as the
    reference every gate compares with) under the task's seed; a repeated set is taken from
    the setup's cache."""
    from ..methods import get_method

    task = setup.task(deletion_ids)
    key = f"reference-{task.reference_key(task.seed)}"
    model = task.model_factory(task.seed).to(task.device)
    info = setup.cache.get(key, model)
    if info is not None:
        return task, model.eval(), float(info["wall_time_s"])
    result = get_method("retrain").unlearn(task, seed=task.seed)
    setup.cache.put(key, result.model, {"wall_time_s": result.cost.wall_time_s})
    return task, result.model.eval(), float(result.cost.wall_time_s)


def judge_answers(targets: Sequence[AttackTarget | dict], traces: Sequence[str]) -> list[dict]:
    """Per target: the generated trace, its final answer, whether it is wrong, whether it is the
    attacker's wrong answer, whether it is well formed and applies the question's functions."""
    out = []
    for t, g in zip(targets, traces):
        t = t if isinstance(t, dict) else t.to_dict()
        correct = final_answer(t["trace"] if "trace" in t else t["answer"])
        ans = final_answer(g)
        well = parse_trace(g) is not None
        fits = trace_matches_question(t["question"], g)
        out.append(
            {
                "example_id": t["example_id"],
                "generated": g,
                "answer": ans,
                "correct_answer": correct,
                "wrong": ans != correct,
                "targeted": t.get("wrong_answer") is not None and ans == t.get("wrong_answer"),
                "well_formed": well,
                "plausible": well and fits,
                "plausible_wrong": well and fits and ans != correct,
            }
        )
    return out


def holdout_accuracy(model: nn.Module, task, rows: Sequence[dict], max_new_tokens: int = 48) -> float:
    """Share of ``rows`` (questions with correct traces) whose greedy final answer is right."""
    if not rows:
        return float("nan")
    traces = greedy_traces(model, task, [r["question"] for r in rows], max_new_tokens)
    return float(np.mean([final_answer(g) == final_answer(r["answer"]) for g, r in zip(traces, rows)]))


def evaluate_deletion(
    setup: ReasoningSetup,
    deletion_ids: Sequence[str],
    targets: Sequence[AttackTarget | dict],
    others: Sequence[dict],
    original: nn.Module,
    gate: Callable | None = None,
    max_new_tokens: int = 48,
) -> dict:
    """Retrain without ``deletion_ids`` and measure: the targets' answers (:func:`judge_answers`),
    the accuracy on the other never-trained questions ``others`` (collateral damage), and
    ``gate(task, original, retrained)`` (e.g. :func:`unlearnkit.service.reasoning_gate.gate_verdict`
    bound to the service's policy) when given."""
    task, model, wall = exact_unlearning(setup, deletion_ids)
    questions = [t["question"] if isinstance(t, dict) else t.question for t in targets]
    judged = judge_answers(targets, greedy_traces(model, task, questions, max_new_tokens))
    return {
        "deletion_ids": list(deletion_ids),
        "targets": judged,
        "success": float(np.mean([j["wrong"] for j in judged])),
        "plausible_success": float(np.mean([j["plausible_wrong"] for j in judged])),
        "targeted_success": float(np.mean([j["targeted"] for j in judged])),
        "plausible": float(np.mean([j["plausible"] for j in judged])),
        "other_accuracy": holdout_accuracy(model, task, others, max_new_tokens),
        "gate": gate(task, original, model) if gate is not None else None,
        "retrain_wall_s": wall,
    }


def random_deletions(ids: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` training ids drawn uniformly without replacement (the baseline)."""
    if not 1 <= k <= len(ids):
        raise ConfigError(f"k must be between 1 and {len(ids)}, not {k}")
    return sorted(random.Random(seed).sample(list(map(str, ids)), k))


def run_attack(
    setup: ReasoningSetup,
    n_targets: int = 3,
    cfg: AttackConfig | None = None,
    n_random: int = 2,
    black_box: bool = True,
    gate: Callable | None = None,
    target_seed: int = 0,
    progress: Callable[[str], None] | None = None,
    require_correct: bool = True,
) -> dict:
    """The whole experiment on one setup: train the original, pick ``n_targets`` never-trained
    questions it answers correctly (any, with ``require_correct=False``: for smoke runs on
    originals too small to learn), plan the white-box (and black-box) attack, retrain without
    each deletion set and without ``n_random`` random sets of the same size, and report;
    ``gate(task, original, retrained) -> dict`` judges each retrained model (the service's gate:
    :func:`unlearnkit.service.reasoning_gate.exact_answer_gate`)."""
    cfg = cfg or AttackConfig()
    say = progress or (lambda s: None)
    task = setup.task()
    original = task.original.eval()
    holdout = list(setup.data.holdout)
    traces = greedy_traces(original, task, [r["question"] for r in holdout], cfg.max_new_tokens)
    right = [r for r, g in zip(holdout, traces) if g == r["answer"] or not require_correct]
    if len(right) < n_targets:
        raise DataError(
            f"the original answers only {len(right)} never-trained questions correctly; "
            f"{n_targets} targets need a better-trained original (more epochs)"
        )
    rng = random.Random(target_seed)
    targets = sorted(rng.sample(right, n_targets), key=lambda r: r["example_id"])
    target_ids = {r["example_id"] for r in targets}
    others = [r for r in holdout if r["example_id"] not in target_ids]
    out: dict = {
        "seed": setup.seed,
        "budget": cfg.budget,
        "n_train": len(task.train),
        "original": {
            "holdout_accuracy": float(
                np.mean([final_answer(g) == final_answer(r["answer"]) for g, r in zip(traces, holdout)])
            ),
            "other_accuracy": holdout_accuracy(original, task, others, cfg.max_new_tokens),
            "train_wall_s": float(task.original_cost.wall_time_s),
        },
    }
    say("white-box plan")
    plans = {"white_box": plan_attack(original, task, targets, cfg, "white-box")}
    if black_box:
        say("black-box surrogate")
        surrogate, _ = task.train_from_scratch(task.train, seed=setup.seed + 1000, desc="surrogate")
        plans["black_box"] = plan_attack(surrogate.eval(), task, targets, cfg, "black-box (surrogate)")
    for name, plan in plans.items():
        say(f"retrain without the {name} deletion set")
        out[name] = {
            "plan": plan.to_dict(),
            **evaluate_deletion(setup, plan.deletion_ids, plan.targets, others, original, gate),
        }
    out["random"] = []
    train_ids = [str(i) for i in task.train.example_ids]
    for r in range(n_random):
        say(f"retrain without random set {r}")
        ids = random_deletions(train_ids, cfg.budget, seed=setup.seed * 1000 + r)
        out["random"].append(evaluate_deletion(setup, ids, plans["white_box"].targets, others, original, gate))
    return out
