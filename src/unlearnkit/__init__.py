"""unlearnkit: remove chosen training data from trained models, verify it against
retraining, and keep an auditable record of every deletion request."""

__version__ = "0.1.0"

from .api import evaluate, unlearn  # noqa: E402
from .data import (  # noqa: E402
    BiasForget,
    ClassForget,
    ConfusionForget,
    ExampleSet,
    IdsForget,
    MislabelledForget,
    RandomForget,
    SubclassForget,
    SubjectForget,
    load_dataset,
)
from .engines.loop import TrainConfig  # noqa: E402
from .errors import UnlearnkitError  # noqa: E402
from .methods import get_method, list_methods  # noqa: E402
from .modalities.classifier.task import make_task  # noqa: E402
from .task import Task  # noqa: E402

__all__ = [
    "__version__",
    "evaluate",
    "unlearn",
    "make_task",
    "Task",
    "TrainConfig",
    "ExampleSet",
    "load_dataset",
    "RandomForget",
    "ClassForget",
    "SubclassForget",
    "SubjectForget",
    "IdsForget",
    "MislabelledForget",
    "BiasForget",
    "ConfusionForget",
    "get_method",
    "list_methods",
    "UnlearnkitError",
]
