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
}

#: the deletion-request service's policy for a language-model line (see
#: :mod:`unlearnkit.service.policy`): TOFU forget quality and model utility against the
#: retrained reference (Maini et al. 2024), the relearning probe's recovery of the forget
#: answers, and canary limits on the mean change of per-example loss on never-trained
#: questions (nats per token).
SERVICE_POLICY: dict = {
    "method": {"name": "npo", "params": {}},
    "gate": {
        "checks": [
            {"metric": "forget_quality", "min": 0.05},
            {"metric": "model_utility", "min_ratio_to_reference": 0.9},
            {"metric": "relearn_gain_rouge", "max": 0.5},
        ],
        "canary": {"size": 20, "max_reference_loss_shift": 1.0, "max_excess_loss_shift": 1.0},
    },
}
