"""Classifier defaults for the layers above: the deletion-request service's policy for a
classifier model line (see :mod:`unlearnkit.service.policy` for every field).

The gate's thresholds are gaps to the retrained reference (``gap_acc_*``: absolute
accuracy gaps, SalUn's "Avg. Gap" parts) and a per-example membership attack on the
forget set against the holdout (``mia_loss_auc``: 0.5 = the attacker cannot tell). The
canary limits bound how much answering a batch may change predictions on never-trained
examples: ``reference_flip_rate`` is what the deletion itself changes (retrain with and
without the data; a request whose own removal moves unrelated predictions more than this
is held for a person to decide), ``excess_flip_rate`` what the method changes beyond that.
"""

METHOD_DEFAULTS: dict[str, dict] = {}

SERVICE_POLICY: dict = {
    "method": {"name": "finetune", "params": {}},
    "gate": {
        "checks": [
            {"metric": "gap_acc_test", "max": 0.03},
            {"metric": "gap_acc_retain", "max": 0.03},
            {"metric": "gap_acc_forget", "max": 0.08},
            {"metric": "mia_loss_auc", "max": 0.65},
        ],
        "canary": {"size": 100, "max_reference_flip_rate": 0.05, "max_excess_flip_rate": 0.03},
    },
}
