"""The federated modality: a classifier trained by clients that each hold whole subjects of
its data, aggregated by one of Flower's strategies, and unlearned when a client leaves or
asks for subjects or examples to be forgotten.

Parts: ``partition`` (clients by subject, Dirichlet label skew), ``runtime`` (the Flower
``ClientApp``, the server program, :class:`~.runtime.LocalGrid` and the Ray simulation),
``history`` (every round's global model, client updates, costs and bytes), ``task``
(:func:`~.task.make_federated_task`, :class:`~.task.FederatedTask`), ``unlearning``
(retrain, exact retraining from checkpoints, FedEraser, the project's methods inside the
client), ``scores`` and ``metrics``. Needs the ``federated`` extra (``flwr[simulation]``).
See ``docs/federated.md``.

Until ``unlearnkit.modalities`` registers it, importing this package registers it (the
same entry, so a later registration there is the same package).
"""

from ...modalities import Modality, register_modality

MODALITY = register_modality(
    Modality(
        "federated",
        "unlearnkit.modalities.federated",
        summary="federated classifiers and the profiles LM with LoRA clients: clients holding whole subjects, Flower strategies, client and subject deletion",
        task_kinds=("federated",),
        capabilities=frozenset({"service"}),
    )
)
