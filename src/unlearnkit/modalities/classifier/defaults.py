"""Classifier defaults for the layers above: the deletion-request service's policy for a
classifier model line (see :mod:`unlearnkit.service.policy` for every field).

The gate's thresholds are gaps to the retrained reference (``gap_acc_*``: absolute
accuracy gaps, SalUn's "Avg. Gap" parts) and a per-example membership attack on the
forget set against the holdout (``mia_loss_auc``: 0.5 = the attacker cannot tell). The
canary limits bound how much answering a batch may change predictions on never-trained
examples: ``reference_flip_rate`` is what the deletion itself changes (retrain with and
without the data; a request whose own removal moves unrelated predictions more than this
is held for a person to decide), ``excess_flip_rate`` what the method changes beyond that.

Calibration (digits MLP, 200 canary examples, one subject's request (~10 examples) at a
time, five requests per method, measured with ``gate.checks: []``): the deletion's own
reference flip rate was <= 0.015 (mean 0.006); the default ``finetune`` gave
``gap_acc_test`` <= 0.011, ``gap_acc_retain`` <= 0.013, ``gap_acc_forget`` <= 0.10 (one
example of a ~10-example forget set is 0.1), ``mia_loss_auc`` <= 0.60, excess flip rate
<= 0.035; scrub, graddiff and salun stayed within the same bounds (graddiff's excess flip
rate up to 0.045). The forget-set gap and the AUC on ~10 examples are coarse: the bounds
leave a step of slack, and the exact path answers what fails.
"""

METHOD_DEFAULTS: dict[str, dict] = {}

SERVICE_POLICY: dict = {
    "method": {"name": "finetune", "params": {}},
    "gate": {
        "checks": [
            {"metric": "gap_acc_test", "max": 0.03},
            {"metric": "gap_acc_retain", "max": 0.03},
            {"metric": "gap_acc_forget", "max": 0.15},
            {"metric": "mia_loss_auc", "max": 0.7},
        ],
        "canary": {"size": 200, "max_reference_flip_rate": 0.05, "max_excess_flip_rate": 0.05},
    },
}
