"""Method hyperparameters on recommender tasks, replacing each method's own
(classifier-chosen) defaults; explicit values always win. A forget set of a few users is
a few dozen interactions: one batch, so a method's classifier defaults (5 passes) are five
steps. Measured on the contract's tiny task (synthetic 120 x 80, three users deleted,
BPR-MF dim 16, forget BPR loss 0.11, the reference's 0.76): gradient ascent reaches 0.99,
GradDiff and NPO pass the reference; each moves the forget loss by more than the
contract's margin without diverging."""

METHOD_DEFAULTS: dict[str, dict] = {
    "gradient_ascent": {"epochs": 10.0, "lr": 2e-2},
    "graddiff": {"epochs": 20.0, "lr": 1e-2},
    "npo": {"epochs": 20.0, "lr": 1e-2, "beta": 0.5},
    "finetune": {"epochs": 5.0, "lr": 1e-2, "batch_size": 1024},
}
