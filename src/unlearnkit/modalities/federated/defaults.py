"""Federated defaults for the layers above: the deletion-request service's policy for a
federated model line (see :mod:`unlearnkit.service.policy` for every field, and
:mod:`.service` for how a line's requests are answered).

``exact`` (exact federated retraining from the stored round before any deleted example first
contributed; it equals federated retraining bit for bit) answers by default, and a failed gate
escalates to ``retrain`` (federated retraining itself, the gate's reference). The checks bound
the global model's accuracy gaps to the reference (``fed_gap_acc_*``) and the loss-threshold
membership attack on the forgotten data; the canary (never-trained test examples of the
server) bounds how far the candidate's predictions are from the reference's (excess) and how
far the deletion itself moves them (reference: retrained with and without the data; above it
the batch is held for a person). A whole client leaving is one request naming its subjects,
so ``limits.max_fraction_per_request`` allows half of the training data (a client of a
3-client federation holds about a third).

Calibration (``python benchmarks/service_federated.py``: digits, 5 clients by subject, FedAvg,
10 rounds, client-04 joining at round 6, 200 canary examples; one run, so these are single
values): over the default line's five batches (people, a whole client of 217 examples leaving,
5 examples, a batch of four people) the deletion's own reference flip rate was 0.020-0.030 and
exact's excess flip rate and accuracy gaps 0 (it is federated retraining); ``gradient_ascent``
inside the client gave excess flip rates 0.040-0.055 and test gaps 0.011-0.033 (two of three
people escalated); FedEraser (``delta_t`` 2) 0.175-0.185 and test gaps 0.13-0.14 (both
escalated). On an undertrained federation (3 clients, 2 rounds, test accuracy 0.79, the
tests') a client leaving moved 0.105 of the canary's predictions: above 0.1 it is held for a
person. Few requests: the bounds leave room, and the exact path answers what fails.
"""

METHOD_DEFAULTS: dict[str, dict] = {}

SERVICE_POLICY: dict = {
    "method": {"name": "exact", "params": {}},
    "gate": {
        "checks": [
            {"metric": "fed_gap_acc_test", "max": 0.03},
            {"metric": "fed_gap_acc_retain", "max": 0.03},
            {"metric": "fed_gap_acc_forget", "max": 0.15},
        ],
        "canary": {"size": 200, "max_reference_flip_rate": 0.1, "max_excess_flip_rate": 0.05},
    },
    "limits": {"max_fraction_per_request": 0.5},
}
