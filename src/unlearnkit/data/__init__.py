"""Data layer: example sets with ids and subjects, loaders, scenarios."""

from .dataset import ExampleSet
from .loaders import BUILTIN, load_dataset
from .profiles import generate_profiles, load_profiles_jsonl, load_tofu
from .scenarios import (
    BiasForget,
    ClassForget,
    ConfusionForget,
    IdsForget,
    MislabelledForget,
    Partition,
    RandomForget,
    Scenario,
    Split,
    SubclassForget,
    SubjectForget,
    parse_scenario,
    partition,
    scenario_from_dict,
)

__all__ = [
    "ExampleSet",
    "BUILTIN",
    "load_dataset",
    "Partition",
    "partition",
    "Split",
    "Scenario",
    "RandomForget",
    "ClassForget",
    "SubclassForget",
    "SubjectForget",
    "IdsForget",
    "MislabelledForget",
    "BiasForget",
    "ConfusionForget",
    "parse_scenario",
    "scenario_from_dict",
    "generate_profiles",
    "load_profiles_jsonl",
    "load_tofu",
]
