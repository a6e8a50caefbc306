"""Method hyperparameters on causal-LM tasks, replacing each method's own (classifier-
chosen) defaults; explicit values always win. Each was measured on the tiny profiles task
(``benchmarks/llm_tuning.py``): hyperparameters tuned for a classifier's forget set rarely
suit a language model's."""

METHOD_DEFAULTS: dict[str, dict] = {
    "gradient_ascent": {"lr": 1e-3, "epochs": 10.0},
    "graddiff": {"lr": 3e-3, "epochs": 10.0},
    "npo": {"lr": 3e-3, "epochs": 10.0, "beta": 0.1},
    "simnpo": {"lr": 3e-3, "epochs": 10.0},
    "wga": {"epochs": 10.0, "lr": 2e-3, "batch_size": 8},
    "undial": {"epochs": 10.0, "lr": 2e-3, "batch_size": 8, "retain_weight": 0.0},
    "ce_u": {"epochs": 10.0, "lr": 1e-3, "batch_size": 8, "retain_weight": 0.0},
    "satimp": {"epochs": 10.0, "lr": 3e-3, "batch_size": 8},
    "pdu": {"lr": 3e-3, "batch_size": 8},
    "imu": {"lr": 2e-3, "epochs": 10.0, "batch_size": 8, "influence_on": "attention"},
    "obliviate": {"lr": 3e-3},
}

#: the deletion-request service's policy for a language-model line (see
#: :mod:`unlearnkit.service.policy`): TOFU forget quality (Maini et al. 2024) and model
#: utility relative to the retrained reference; the probes of other wordings (paraphrased
#: and alias questions) and the relearning attack, each within a gap of the reference's own
#: value; canary limits on the mean absolute change of per-question loss (nats) on the
#: never-trained holdout people. Measured on the tiny profiles task (10 people, 1-layer
#: 64-wide Llama; `tests/test_service_lm.py`): npo kept 0.87x of the reference's utility
#: (so the 0.9 bound sends it to the exact path), forget quality 0.35-0.73, reference loss
#: shift 0.35-0.50 and excess 0.40-0.54 on two requests: the canary bounds leave room
#: above those; too few requests to call them calibrated.
SERVICE_POLICY: dict = {
    "method": {"name": "npo", "params": {}},
    "gate": {
        "checks": [
            {"metric": "forget_quality", "min": 0.05},
            {"metric": "model_utility", "min_ratio_to_reference": 0.9},
            {"metric": "paraphrase_rouge", "max_gap_to_reference": 0.25},
            {"metric": "alias_rouge", "max_gap_to_reference": 0.25},
            {"metric": "relearn_rouge", "max_gap_to_reference": 0.25},
        ],
        "canary": {"size": 20, "max_reference_loss_shift": 1.5, "max_excess_loss_shift": 1.5},
    },
}
