"""Method hyperparameters on graph tasks, replacing each method's own (classifier-chosen)
defaults; explicit values always win. A step of a graph method is one full-graph forward
pass, and the forget sets are small (5% of the edges of a small graph: a batch or two),
so a method's classifier defaults (5 passes over the forget set) are a handful of steps.
Measured on the contract's tiny task (karate club, link prediction, 10% of the training
edges deleted, 2-layer GCN): these move the forget-edge loss past the reference's
without diverging."""

METHOD_DEFAULTS: dict[str, dict] = {
    "gradient_ascent": {"epochs": 10.0, "lr": 1e-2},
    "graddiff": {"epochs": 20.0, "lr": 1e-2},
    "npo": {"epochs": 20.0, "lr": 1e-2, "beta": 0.5},
    "finetune": {"epochs": 30.0, "lr": 1e-2, "batch_size": 4096},
}
