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
