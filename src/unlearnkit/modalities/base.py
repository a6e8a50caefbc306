"""What every modality provides: the adapter protocol and the :class:`Modality` object.

A modality is one package, ``unlearnkit/modalities/<name>/``, with a few fixed modules:

* ``adapter.py``: the adapter, an object satisfying :class:`Adapter`: what methods and
  metrics call instead of the model's own API (logits, per-example losses,
  log-likelihoods, KL to a teacher, representations, batch sizes, model checks);
* ``models.py`` (and ``tiny_lm.py`` for language models): the built-in architectures;
* ``task.py``: the task builder (``make_task`` / ``make_lm_task``), the task subclass that
  holds the modality's own fields, and the spec round trip (``task_from_spec``);
* ``scores.py`` and ``metrics.py``: per-example scores of one model on one split and the
  metrics derived from them, registered in the one catalogue
  (:mod:`unlearnkit.evaluation.metrics`);
* ``defaults.py``: method hyperparameters that replace a method's own defaults on this
  modality (explicit values always win);
* ``__init__.py``: the :class:`Modality` object, registered with
  :func:`unlearnkit.modalities.register_modality`.

The layers above (CLI, runner, :class:`~unlearnkit.task.Task`, methods) ask the modality
(:func:`unlearnkit.modalities.get_modality`) and never test its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import ExampleSet
    from ..task import Task


@runtime_checkable
class Adapter(Protocol):
    """The calls every modality's adapter answers (see ``classifier/adapter.py`` for the
    plainest one). Batches are dicts of tensors produced by the task's example sets."""

    modality: str
    device: torch.device | str

    def to_device(self, batch: dict) -> dict:
        """The batch with its tensors on the adapter's device."""

    def batch_size(self, batch: dict) -> int:
        """How many examples the batch holds (what the loop counts as forward/backward)."""

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The model's raw outputs for the batch."""

    def per_example_loss(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss of each example, shape ``(B,)``; ``labels`` override the batch's."""

    def log_likelihood(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` per example, shape ``(B,)``: what NPO-style losses compare."""

    def per_example_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """``KL(teacher || student)`` per example, shape ``(B,)``."""

    def representations(self, model: nn.Module, batch: dict, layer: str | int | None = None) -> torch.Tensor:
        """Hidden representations of each example, shape ``(B, D)`` (``layer``: which one;
        ``None``: the one the modality reads by default)."""

    def check_model(self, model: nn.Module, data: "ExampleSet") -> None:
        """Raise :class:`~unlearnkit.errors.ModelDataMismatchError` if the model cannot
        take ``data`` or its outputs do not fit it."""


#: what a modality can declare it supports (the CLI and runner read these instead of names)
CAPABILITIES = {
    "shadow_privacy": "per-example privacy with shadow models (evaluate --privacy)",
    "connect": "mode connectivity between two models (unlearnkit connect)",
    "lora": "methods train LoRA adapters merged back afterwards (unlearn --lora)",
    "default_forget": "a trained task has a forget split of its own, so a request may name none",
    "ensembles": "plain weighted training of many models at once as one vectorised ensemble",
    "service": "deployed model lines in the deletion-request service (cumulative deletions through "
    "the training set's example and subject ids, Task.without_examples, canary examples from the test split)",
    "dp_training": "originals trained with DP-SGD from the command line (train --dp-epsilon)",
    "test_fraction": "the held-out test share is an option of the task (train --test-fraction)",
}


@dataclass
class Modality:
    """One modality: its name, what it supports, and where its parts live.

    The parts are imported lazily (``<package>.task``, ``<package>.metrics``, ...), so
    registering a modality costs nothing until it is used.

    Attributes:
        name: the name tasks record in their spec (``spec["modality"]``) and adapters carry.
        package: the package holding the parts (``unlearnkit.modalities.classifier``).
        summary: one line for listings.
        task_kinds: the ``unlearnkit train --task`` / ``demo --task`` values it answers.
        capabilities: keys of :data:`CAPABILITIES` it supports.
    """

    name: str
    package: str
    summary: str = ""
    task_kinds: tuple[str, ...] = ()
    capabilities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"modality {self.name!r}: unknown capabilities {sorted(unknown)}")
        self.capabilities = frozenset(self.capabilities)

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def part(self, name: str):
        """The module ``<package>.<name>`` (imported on first use)."""
        return importlib.import_module(f"{self.package}.{name}")

    @property
    def method_defaults(self) -> dict[str, dict[str, Any]]:
        """``method name -> {hyperparameter: value}`` replacing a method's own defaults on
        this modality (``<package>.defaults.METHOD_DEFAULTS``; explicit values always win)."""
        try:
            mod = self.part("defaults")
        except ModuleNotFoundError:
            return {}
        return dict(getattr(mod, "METHOD_DEFAULTS", {}))

    @property
    def service_policy(self) -> dict[str, Any]:
        """The deletion-request service's default policy for a model line of this modality
        (``<package>.defaults.SERVICE_POLICY``: method, gate checks, canary limits); a
        policy file overrides any part. Empty where the modality states none."""
        try:
            mod = self.part("defaults")
        except ModuleNotFoundError:
            return {}
        import copy

        return copy.deepcopy(getattr(mod, "SERVICE_POLICY", {}))

    # the calls the layers above make; each is the task module's function of the same name
    def task_from_spec(
        self,
        spec: dict,
        scenario: Any = None,
        cache: Any = None,
        progress: bool = False,
        device: str | torch.device | None = None,
    ) -> "Task":
        """Rebuild a stored task (its original from ``cache`` when it holds it) with its own
        forget set or ``scenario``."""
        return self.part("task").task_from_spec(spec, scenario, cache=cache, progress=progress, device=device)

    def request_scenario(
        self, ids: list[str] | None = None, subjects: list[str] | None = None, scenario: str | None = None
    ) -> Any:
        """The scenario of a deletion request naming example ``ids``, ``subjects`` or a
        ``scenario`` string (at most one); ``None`` where the modality has a default forget
        split (capability ``default_forget``), else a ConfigError."""
        return self.part("task").request_scenario(ids=ids, subjects=subjects, scenario=scenario)

    def build_task(self, kind: str, options: dict, seed: int = 0, cache: Any = None, progress: bool = False) -> "Task":
        """Build (and train, or load from ``cache``) the task ``unlearnkit train --task kind``
        describes; ``options`` are the command's modality options (None = default)."""
        return self.part("task").build_task(kind, options, seed=seed, cache=cache, progress=progress)

    def train_metrics(self, task: "Task") -> dict[str, float]:
        """The few numbers ``unlearnkit train`` reports about a freshly trained original."""
        return self.part("task").train_metrics(task)

    def score_model(self, model: nn.Module, task: "Task") -> dict:
        """Per-example scores of ``model`` on every split the modality's metrics read."""
        return self.part("scores").score_model(model, task)

    def task_label(self, spec: dict) -> str:
        """A short human label of a stored task (reports, listings)."""
        fn: Callable[[dict], str] | None = getattr(self.part("task"), "task_label", None)
        return fn(spec) if fn else str(spec.get("dataset", self.name))

    def load_metrics(self) -> None:
        """Register the modality's metrics in the catalogue."""
        self.part("metrics")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "task_kinds": list(self.task_kinds),
            "capabilities": sorted(self.capabilities),
            "method_defaults": self.method_defaults,
        }
