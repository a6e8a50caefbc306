"""Modalities: one package each, found through one registry.

>>> from unlearnkit.modalities import get_modality
>>> get_modality("causal_lm").supports("lora")
True

Built in: ``classifier`` (tabular and image classifiers), ``causal_lm`` (causal
language models), ``graph`` (graph neural networks), ``recommender`` (implicit-feedback
recommenders) and ``federated`` (federated classifiers and LMs on Flower). A third-party modality registers a
:class:`Modality` naming its package (see ``docs/adding-a-modality.md``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import CAPABILITIES, Adapter, Modality

_MODALITIES: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Add ``modality`` to the registry (a second registration under the same name must be
    the same package)."""
    old = _MODALITIES.get(modality.name)
    if old is not None and old.package != modality.package:
        raise ValueError(f"modality {modality.name!r} registered twice ({old.package}, {modality.package})")
    _MODALITIES[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """The registered modality called ``name`` (ConfigError if there is none)."""
    try:
        return _MODALITIES[name]
    except KeyError:
        raise ConfigError(f"unknown modality {name!r}; registered: {', '.join(sorted(_MODALITIES))}") from None


def list_modalities() -> list[Modality]:
    return [_MODALITIES[n] for n in sorted(_MODALITIES)]


def modality_of_spec(spec: dict | None) -> Modality:
    """The modality of a stored task spec (records written before specs named their
    modality are classifier tasks)."""
    return get_modality((spec or {}).get("modality", "classifier"))


def modality_for_task_kind(kind: str) -> Modality:
    """The modality that answers ``unlearnkit train --task KIND``."""
    for m in _MODALITIES.values():
        if kind in m.task_kinds:
            return m
    kinds = sorted(k for m in _MODALITIES.values() for k in m.task_kinds)
    raise ConfigError(f"--task must be one of {', '.join(kinds)}, not {kind!r}")


register_modality(
    Modality(
        "classifier",
        "unlearnkit.modalities.classifier",
        summary="classifiers of tabular rows and images (any nn.Module mapping inputs to logits)",
        task_kinds=("classifier",),
        capabilities=frozenset({"shadow_privacy", "connect", "ensembles", "service"}),
    )
)
register_modality(
    Modality(
        "causal_lm",
        "unlearnkit.modalities.causal_lm",
        summary="causal language models on question-answer pairs or verbatim text (Hugging Face models)",
        task_kinds=("profiles", "bible", "qa"),
        capabilities=frozenset({"lora", "default_forget", "service", "dp_training"}),
    )
)

register_modality(
    Modality(
        "graph",
        "unlearnkit.modalities.graph",
        summary="graph neural networks on one graph: node classification and link prediction (PyG layers)",
        task_kinds=("graph", "graph-link"),
        capabilities=frozenset({"service", "shadow_privacy", "test_fraction"}),
    )
)

register_modality(
    Modality(
        "recommender",
        "unlearnkit.modalities.recommender",
        summary="implicit-feedback recommenders: BPR matrix factorisation, LightGCN, two-tower (users' histories, "
        "interactions, items)",
        task_kinds=("recsys",),
        capabilities=frozenset({"service", "test_fraction"}),
    )
)

register_modality(
    Modality(
        "federated",
        "unlearnkit.modalities.federated",
        summary="federated classifiers and the profiles LM with LoRA clients: clients holding whole subjects, Flower strategies, client and subject deletion",
        task_kinds=("federated",),
        capabilities=frozenset({"service"}),
    )
)

__all__ = [
    "Adapter",
    "CAPABILITIES",
    "Modality",
    "register_modality",
    "get_modality",
    "list_modalities",
    "modality_of_spec",
    "modality_for_task_kind",
]
