"""Reveal-and-Release on the tiny profiles task (forget10 = 1 person): it never reads the
forget set, resolves its target to names, reveals what the original knows about the target
(deterministically under a seed), and unlearns from it; the LM contract suite runs it too
(tests/test_lm_methods_contract.py)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

pytest.importorskip("transformers")

from unlearnkit.engines.loop import LoopStats  # noqa: E402
from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.reveal_release import (  # noqa: E402
    CONTROL_NAMES,
    INSTRUCTIONS,
    RevealReleaseParams,
    _Revealer,
    forget_target,
    reveal,
    swap_name,
)
from unlearnkit.testing import forget_loss, same_state, state_of  # noqa: E402


class ForgetSetRead(AssertionError):
    pass


class Sentinel:
    """Stands in for an example set the method must not read: any use fails."""

    def __init__(self, what: str):
        object.__setattr__(self, "what", what)

    def __getattr__(self, name):
        raise ForgetSetRead(f"read {self.what}.{name}")

    def __len__(self):
        raise ForgetSetRead(f"len({self.what})")

    def __iter__(self):
        raise ForgetSetRead(f"iter({self.what})")


def guarded(task):
    """``task`` with its forget set, its training set (which holds the forget rows) and its
    forget-people probes replaced by sentinels."""
    split = copy.copy(task.split)
    split.forget, split.train = Sentinel("forget"), Sentinel("train")
    sets = {k: (Sentinel(k) if k.startswith("forget") else v) for k, v in task.eval_sets.items()}
    return dataclasses.replace(task, split=split, eval_sets=sets)


def the_person(task):
    from unlearnkit.data.profiles import generate_profiles

    s = task.spec
    ds = generate_profiles(
        n_people=s["n_people"], seed=s["data_seed"], qa_per_person=s["qa_per_person"], n_other=s["n_other"]
    )
    (pid,) = {str(x) for x in task.forget.subject_ids}
    return ds.person(pid)


def test_target_is_the_requested_persons_name(lm_task):
    assert forget_target(lm_task) == [the_person(lm_task)["name"]]
    assert forget_target(lm_task, " Ada Quill ; Bo Renn;") == ["Ada Quill", "Bo Renn"]
    other = dataclasses.replace(lm_task, spec=dict(lm_task.spec, source="bible"))
    with pytest.raises(ConfigError, match="target="):
        forget_target(other)


def test_it_never_reads_the_forget_set(lm_task):
    g = guarded(lm_task)
    r = METHODS["reveal_release"](max_steps=4).unlearn(g, seed=0)
    assert r.cost.steps == 4 and r.extra["revealed_rows"][0] > 0
    assert not same_state(state_of(r.model), state_of(lm_task.original))
    # the guard is live: the comparison path, which reads the forget set, trips it
    with pytest.raises(ForgetSetRead):
        METHODS["reveal_release"](max_steps=1, data="forget").unlearn(g, seed=0)


def test_the_contrast_is_own_minus_mean_control_log_prob(lm_task):
    p = RevealReleaseParams()
    rv = _Revealer(lm_task.original, lm_task, "Question: {question}\nAnswer:", p, LoopStats())
    inst, name, ans = INSTRUCTIONS[1], "Ada Quill", "She is a painter."
    c = rv.contrast([(inst, name, ans)], list(CONTROL_NAMES[:2]))
    own = rv.mean_log_prob([inst.format(name=name)], [ans])[0]
    ctrl = [rv.mean_log_prob([inst.format(name=n)], [ans])[0] for n in CONTROL_NAMES[:2]]
    assert c[0] == pytest.approx(own - np.mean(ctrl), abs=1e-5)


def test_reveal_is_deterministic_under_a_seed_and_keeps_what_passes_the_filter(lm_task):
    p = RevealReleaseParams()
    names = forget_target(lm_task)
    a, info = reveal(lm_task.original, lm_task, names, p, seed=0, cost=LoopStats())
    b, _ = reveal(lm_task.original, lm_task, names, p, seed=0, cost=LoopStats())
    c, _ = reveal(lm_task.original, lm_task, names, p, seed=1, cost=LoopStats())
    assert a == b and a != c
    assert len(info["instructions"]) == p.instructions and len(set(info["instructions"])) == p.instructions
    assert info["rewards"] == sorted(info["rewards"], reverse=True)  # the best arms by mean reward
    assert a and all(r["contrast"] >= p.min_reveal and names[0] in r["question"] for r in a)
    strict, _ = reveal(lm_task.original, lm_task, names, RevealReleaseParams(min_reveal=1.0), seed=0, cost=LoopStats())
    assert len(strict) < len(a) and all(r["contrast"] >= 1.0 for r in strict)


def test_swap_name_replaces_the_name_and_its_words():
    assert swap_name("Ada Quill wrote it; Quill is Ada.", "Ada Quill", "Bo Renn") == "Bo Renn wrote it; Renn is Bo."


def test_it_forgets_the_true_answers_from_revealed_data_only(lm_task):
    before = forget_loss(lm_task.original, lm_task)
    r = METHODS["reveal_release"](rounds=2).unlearn(guarded(lm_task), seed=0)
    assert forget_loss(r.model, lm_task) > before + 1.0
    assert r.cost.examples_forward > r.cost.examples_backward > 0  # generations and scoring counted
    assert len(r.extra["instructions"]) == 2


def test_it_refuses_bad_hyperparameters():
    for bad in ({"rounds": 0}, {"loss": "dpo"}, {"data": "train"}, {"temperature": 0.0}, {"instructions": 99}):
        with pytest.raises(ConfigError):
            METHODS["reveal_release"](**bad)
