"""Differentially private training of the original ("unlearning-ready" training).

In the spirit of DP2Unlearning (Al Mahmud, Jebreel, Domingo-Ferrer & Sanchez 2025,
"DP2Unlearning: An Efficient and Guaranteed Unlearning Framework for LLMs"): the
original is trained with DP-SGD (Abadi et al. 2016, CCS) on all the training data, so
any one example's influence on it is bounded by (epsilon, delta); unlearning is then
ordinary fine-tuning of that model on the retain set (the ``finetune`` method), whose
output is at least as private for the forget set as the DP original was. DP2Unlearning
protects text for LLMs; here the same recipe trains a classifier or a causal language model
(the tiny Llama of :mod:`unlearnkit.modalities.causal_lm`, or a local Hugging Face model)
through Opacus:

* per-example gradients clipped to ``max_grad_norm`` (flat clipping), Gaussian noise
  of std ``noise_multiplier * max_grad_norm`` added to their sum, Poisson sampling of
  batches with rate ``q = 1 / ceil(n / batch_size)`` (Opacus ``PrivacyEngine.make_private``);
* ``noise_multiplier`` is chosen *before* training so that the RDP accountant
  (Mironov 2017) reaches ``target_epsilon`` at ``delta`` after the run's number of
  steps (``opacus.accountants.utils.get_noise_multiplier``); :func:`dp_plan` returns it
  with the epsilon it spends, so a task's spec (and cache key) can record both.

Language models: Opacus' per-sample gradient hooks cover every layer of the Llama
(``nn.Embedding`` and ``nn.Linear`` by their own rules; ``LlamaRMSNorm``, whose weight no rule
knows, through Opacus' ``torch.func`` fallback, which computes that layer's per-sample gradient
with ``vmap``); rotary embeddings and attention hold no parameters. Checked against one-example
backward passes in ``tests/test_dp_lm.py``. The loss is the answer-token NLL of each row from
the full ``(B, T, V)`` logits: the adapter's answer-only shortcut projects a flat ``(N, H)`` of
answer positions through ``lm_head``, and per-sample gradients need every layer to see one row
per example. A sequence is one example: the guarantee is per QA row, not per person (a person
with ten rows is protected as a group of ten: ``10 * epsilon``, with a larger delta, by the
usual group-privacy bound).

This is the one place outside :func:`unlearnkit.loop.run_loop` that optimises: Opacus
must wrap the model (per-example gradient hooks), the optimiser (clipping and noise)
and the data loader (Poisson sampling) itself, which ``run_loop``'s streams and
optimiser cannot host. It still reads the same :class:`~unlearnkit.loop.TrainConfig`
(epochs, max_steps, batch_size, lr, optimizer, weight_decay, schedule,
divergence_threshold; ``grad_clip`` is replaced by the per-example ``max_grad_norm``),
seeds the same way and returns the same :class:`~unlearnkit.loop.LoopStats`.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from ..data.dataset import ExampleSet
from ..errors import ConfigError, DivergenceError
from ..utils import derive_seed, seed_everything
from . import distributed
from .loop import LoopStats, TrainConfig, count_steps, make_optimizer

ACCOUNTANT = "rdp"
#: Opacus warnings that are expected here and say nothing actionable (seeded RNG is documented
#: below; the hook warning fires because inputs do not require grad; the alpha-range note is
#: about the accountant's tightness, not its validity).
_QUIET = ("Secure RNG turned off", "Full backward hook is firing", "Optimal order is the largest alpha")


@dataclass
class DPConfig:
    """What ``make_task(dp=...)`` accepts: ``{"epsilon": 8, "delta": 1e-5, "max_grad_norm": 1.0}``."""

    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and 0 < self.delta < 1 and self.max_grad_norm > 0):
            raise ConfigError("dp: epsilon must be > 0, delta in (0, 1) and max_grad_norm > 0")

    @classmethod
    def from_dict(cls, d: dict) -> "DPConfig":
        """Parse a dict; keys written by :func:`dp_plan` (a stored spec) are accepted and ignored."""
        derived = {"noise_multiplier", "epsilon_spent", "steps", "sample_rate", "accountant"}
        unknown = sorted(set(d) - {"epsilon", "delta", "max_grad_norm"} - derived)
        if unknown:
            raise ConfigError(f"dp: unknown key(s) {unknown}; use epsilon, delta and max_grad_norm")
        try:
            return cls(**{k: float(v) for k, v in d.items() if k not in derived})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"dp: {e}") from None


def _opacus():
    try:
        import opacus  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the extra
        raise ConfigError("DP training needs Opacus: pip install 'unlearnkit[dp]'") from None
    return opacus


def dp_plan(n: int, cfg: TrainConfig, dp: DPConfig) -> dict:
    """The noise multiplier reaching ``dp.epsilon`` at ``dp.delta`` for this run, and what it spends.

    Returns ``{"epsilon", "delta", "max_grad_norm", "noise_multiplier", "steps",
    "sample_rate", "epsilon_spent", "accountant"}`` (JSON-able; goes into the task spec).
    """
    _opacus()
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    if n < 1:
        raise ConfigError("DP training needs a non-empty training set")
    steps = count_steps(cfg, n)
    if steps < 1:
        raise ConfigError("DP training needs at least one step: raise epochs or max_steps")
    q = 1.0 / math.ceil(n / cfg.batch_size)
    with _quiet():
        sigma = float(
            get_noise_multiplier(
                target_epsilon=dp.epsilon, target_delta=dp.delta, sample_rate=q, steps=steps, accountant=ACCOUNTANT
            )
        )
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        spent = float(acc.get_epsilon(delta=dp.delta))
    return {
        **asdict(dp),
        "noise_multiplier": sigma,
        "steps": steps,
        "sample_rate": q,
        "epsilon_spent": spent,
        "accountant": ACCOUNTANT,
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for msg in _QUIET:
            warnings.filterwarnings("ignore", message=msg)
        yield


def check_dp_model(model: nn.Module) -> None:
    """Raise ConfigError if Opacus cannot compute per-example gradients for ``model`` (e.g. BatchNorm)."""
    _opacus()
    from opacus.validators import ModuleValidator

    was_training = model.training  # Opacus validates a model in training mode (an LM is built in eval)
    errors = ModuleValidator.validate(model.train(), strict=False)
    model.train(was_training)
    if errors:
        raise ConfigError(
            f"this model cannot be trained with DP-SGD ({str(errors[0]).splitlines()[0]}); "
            "use a model without BatchNorm (linear, mlp, cnn)"
        )


def train_dp_original(
    model: nn.Module,
    data: ExampleSet,
    adapter,
    cfg: TrainConfig,
    seed: int,
    target_epsilon: float = 8.0,
    delta: float = 1e-5,
    max_grad_norm: float = 1.0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "dp-original",
) -> tuple[nn.Module, LoopStats, float]:
    """Train ``model`` on ``data`` with DP-SGD (Opacus); returns ``(model, cost, epsilon spent)``.

    The noise multiplier comes from :func:`dp_plan`; the epsilon returned is the RDP
    accountant's after the steps actually taken, at ``delta``. Deterministic under
    ``seed``: Poisson sampling and the gradient noise draw from generators derived
    from it (Opacus' ``secure_mode`` is off: seeded noise is not cryptographically
    secure, which is fine for research and not for deployment). The model is returned
    without Opacus' hooks or per-sample gradient buffers.
    """
    _opacus()
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    if distributed.active() is not None:
        raise ConfigError("DP-SGD training runs in one process: train the DP original outside data_parallel()")
    plan = dp_plan(len(data), cfg, DPConfig(target_epsilon, delta, max_grad_norm))
    check_dp_model(model)
    device = torch.device(device)
    seed_everything(derive_seed(seed, "loop") % (2**31))
    model.to(device).train()
    shuffle_gen = torch.Generator().manual_seed(derive_seed(seed, "stream", "train") % (2**63))
    tensors, to_batch = _columns(data)
    loader = DataLoader(TensorDataset(*tensors), batch_size=cfg.batch_size, shuffle=True, generator=shuffle_gen)
    noise_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "dp-noise") % (2**63))
    stats = LoopStats()
    t0 = time.perf_counter()
    with _quiet():
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        hooks, opt, loader = engine.make_private(
            module=model,
            optimizer=make_optimizer(model.parameters(), cfg),
            data_loader=loader,
            noise_multiplier=plan["noise_multiplier"],
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_gen,
            wrap_model=False,
        )
        try:
            _dp_steps(model, adapter, opt, loader, to_batch, cfg, plan["steps"], stats, device, progress, desc)
        finally:
            hooks.cleanup()
            for p in model.parameters():  # what Opacus' optimiser leaves on the parameters
                p.grad = None
                for attr in ("summed_grad", "grad_sample", "_forward_counter"):
                    if hasattr(p, attr):
                        delattr(p, attr)
            stats.wall_time_s = time.perf_counter() - t0
        epsilon = float(engine.accountant.get_epsilon(delta=delta))
    return model.eval(), stats, epsilon


def _columns(data: ExampleSet):
    """The tensors Opacus' Poisson loader samples rows of, and how a sampled batch becomes
    the adapter's batch dict: ``(x, y)`` for classifiers; token ids, attention mask and labels
    (trimmed to the batch's longest row, as ``TokenExampleSet.batches`` does) for LMs."""
    mask = getattr(data, "attention_mask", None)
    if mask is None:
        return (data.inputs, data.labels), lambda x, y: {"x": x, "y": y}

    def token_batch(ids, am, lab):
        t = max(1, int(am.sum(1).max())) if len(am) else 1
        ids, am, lab = ids[:, :t], am[:, :t], lab[:, :t]
        return {"input_ids": ids, "attention_mask": am, "labels": lab, "x": ids, "y": lab}

    return (data.inputs, mask, data.labels), token_batch


def _dp_steps(
    model,
    adapter,
    opt,
    loader,
    to_batch,
    cfg: TrainConfig,
    steps: int,
    stats: LoopStats,
    device: torch.device,
    progress: bool,
    desc: str,
) -> None:
    """``steps`` DP-SGD steps over Poisson-sampled batches (re-iterating the loader as needed)."""
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt.original_optimizer, T_max=max(1, steps))
        if cfg.schedule == "cosine"
        else None
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True)
    try:
        while stats.steps < steps:
            for columns in loader:
                if stats.steps >= steps:
                    break
                opt.zero_grad(set_to_none=True)
                batch = to_batch(*(c.to(device) for c in columns))
                n = len(columns[0])
                # full logits: per-sample gradient hooks need one row per example at every layer
                losses = adapter.per_example_loss(model, batch, logits=adapter.logits(model, batch))
                loss = losses.mean() if len(losses) else losses.sum()  # an empty Poisson batch: noise only
                if not torch.isfinite(loss) or (
                    cfg.divergence_threshold is not None and abs(loss.item()) > cfg.divergence_threshold
                ):
                    raise DivergenceError(
                        f"{desc}: loss became {loss.item()} at step {stats.steps}; lower the learning rate", stats.steps
                    )
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                stats.steps += 1
                stats.examples_forward += n
                stats.examples_backward += n
                stats.final_loss = float(loss.detach())
                stats.losses.append(stats.final_loss)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
