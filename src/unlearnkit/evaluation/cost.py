"""Cost metrics every modality shares: what producing a model cost, and its ratio to
retraining (the reference)."""

from __future__ import annotations

from .metrics import NAN, EvalInputs, register_metric

ALL_MODALITIES = ("classifier", "causal_lm", "graph", "recommender")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else NAN


def forget_set_passes(examples_forward: float, examples_backward: float, forget_size: int) -> float:
    """``(examples forward + examples backward) / (2 |F|)``: how many times the work of one
    forward and one backward pass over the forget set the run did (nan for an empty forget
    set)."""
    return _ratio(examples_forward + examples_backward, 2 * forget_size)


@register_metric(
    "cost",
    {"wall_time_s": "lower", "steps": "lower", "examples_forward": "lower", "examples_backward": "lower"},
    "Cost accounting as in the unlearning benchmarks (e.g. Jia et al. 2023 run-time efficiency, "
    "'RTE'); counts from unlearnkit.engines.loop.LoopStats.",
    needs=("cost",),
    modalities=ALL_MODALITIES,
    order=91,
    help={
        "wall_time_s": "wall-clock time of the run, seconds",
        "steps": "optimiser steps",
        "examples_forward": "examples passed forward (teachers included)",
        "examples_backward": "examples passed backward",
    },
    units={"wall_time_s": "seconds", "steps": "count", "examples_forward": "count", "examples_backward": "count"},
)
def cost(inputs: EvalInputs) -> dict[str, float]:
    """What producing the evaluated model cost: wall time, optimiser steps, examples.

    Read from :class:`~unlearnkit.loop.LoopStats`: seconds of the loop, optimiser steps,
    examples through forward passes (teachers included) and through backward passes.
    Wall time depends on the hardware; the example counts do not.
    """
    c = inputs.cost
    return {
        "wall_time_s": c.wall_time_s,
        "steps": c.steps,
        "examples_forward": c.examples_forward,
        "examples_backward": c.examples_backward,
    }


@register_metric(
    "cost_ratio",
    {"cost_ratio_time": "lower", "cost_ratio_examples": "lower"},
    "Speed-up over retraining as reported by e.g. Jia et al. 2023 and Fan et al. 2024; "
    "here as the inverse ratio (cost / retrain cost).",
    needs=("cost", "reference_cost"),
    modalities=ALL_MODALITIES,
    order=90,
    help={
        "cost_ratio_time": ("wall time / the reference's (retrain) wall time", "≪ 1x (1x = retraining)"),
        "cost_ratio_examples": ("examples processed (forward + backward) / the reference's", "≪ 1x"),
    },
    headline=("cost_ratio_time",),
    units={"cost_ratio_time": "ratio", "cost_ratio_examples": "ratio"},
)
def cost_ratio(inputs: EvalInputs) -> dict[str, float]:
    """Cost of the evaluated model relative to retraining the reference.

    ``cost_ratio_time = wall_time / wall_time_ref``; ``cost_ratio_examples =
    (fwd + bwd examples) / (fwd_ref + bwd_ref)``. Below 1 is cheaper than retraining;
    nan when the reference's cost is zero.

    Both sides are timed the same way: warm. A deletion request
    (:func:`unlearnkit.requests.answer_request`) times the method after one warm-up
    optimiser step of the task's loop, and the reference's retraining
    (:func:`~unlearnkit.orchestration.experiment.get_reference`) is timed after the same
    warm-up, so one-off process start-up (lazy imports, the first backward pass, thread
    pools) is charged to neither. A cached reference keeps the time of that warm
    retraining. Times are the method's (or retraining's) own wall time, not the process's;
    the example counts do not depend on timing at all.
    """
    c, r = inputs.cost, inputs.reference_cost
    return {
        "cost_ratio_time": _ratio(c.wall_time_s, r.wall_time_s),
        "cost_ratio_examples": _ratio(
            c.examples_forward + c.examples_backward, r.examples_forward + r.examples_backward
        ),
    }


@register_metric(
    "forget_passes",
    {"forget_passes": "lower"},
    "Cost in forget-set passes (unlearnkit; issue 12): the examples a run processed measured "
    "against the forget set, whose one forward and backward pass is the floor of any method "
    "that must look at the data it forgets.",
    needs=("cost", "forget_size"),
    modalities=ALL_MODALITIES,
    order=92,
    help={
        "forget_passes": (
            "(examples forward + examples backward) / (2 x forget-set size)",
            "close to 1 (one forward and backward pass over the forget set)",
        )
    },
    units={"forget_passes": "ratio"},
)
def forget_passes(inputs: EvalInputs) -> dict[str, float]:
    """Cost in forget-set passes: ``(fwd + bwd) / (2 |F|)``.

    ``fwd`` and ``bwd`` are the run's examples through forward and backward passes
    (:class:`~unlearnkit.engines.loop.LoopStats`, teachers and frozen references included),
    ``|F|`` the forget set's size in the rows the loop counts (examples, question-answer
    pairs, edges or nodes). One forward and one backward pass over the forget set gives 1:
    the physical floor of a method that must read what it forgets. Retain-set passes count
    too, so a method that repairs on retain data pays for it here; a forward-only method
    (ICUL, a closed-form step on cached statistics) can land below 1. Unlike the wall-time
    ratio it does not depend on the hardware or on load.
    """
    c = inputs.cost
    return {"forget_passes": forget_set_passes(c.examples_forward, c.examples_backward, int(inputs.forget_size))}
