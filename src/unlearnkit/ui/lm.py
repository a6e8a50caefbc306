"""The comparator's language-model views: forget quality vs model utility, probes, questions.

Each function takes the workspace and the query's values and returns a JSON-ready dict
(every number finite or None); bad input raises :class:`~unlearnkit.ui.models.UIError`.
Models come from :mod:`unlearnkit.ui.models` (hash verified); what is computed uses the
project's own code: the causal-LM metrics of :mod:`unlearnkit.modalities.causal_lm.metrics`
(``lm_probes``) and :mod:`~unlearnkit.modalities.causal_lm.attacks` (``lm_relearn``), the
scores of :mod:`~unlearnkit.modalities.causal_lm.scores` (``score_lm_splits``), greedy
answers by its ``generate_answers`` and answer-token log-probabilities by the task adapter's
``token_log_probs``. Every computed result goes through
:class:`unlearnkit.ui.cache.ResultCache`, keyed by the model's artifact hash, the task key
and the fingerprints of the sets it reads.

* :func:`overview`: every causal-LM run of the store with the metrics it stored (TOFU's
  forget quality and model utility, the headline LM metrics), grouped by task and forget
  set, with the reference of each group (a stored retrain run, else forget quality 1 by
  definition and its utility unknown). Nothing is computed.
* :func:`probes`: paraphrase, alias, multi-hop and relearning probes of two models and the
  retrained reference. A stored run's own values are read; what is not stored is computed
  when cheap (the probe sets are scored: one teacher-forced pass and greedy answers on a
  few questions), the relearning attack (a fine-tuned copy of the model) only for models of
  at most :data:`RELEARN_MAX_PARAMS` parameters; else None with the reason.
* :func:`questions` / :func:`question`: the forget or retain questions, and for one of
  them each model's greedy answer and the per-token log-probability of the true answer,
  with its difference to the reference's.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UnlearnkitError
from ..evaluation import metrics as catalogue
from ..evaluation.metrics import EvalInputs
from ..modalities import modality_of_spec
from ..orchestration.experiment import Workspace
from ..orchestration.records import RunRecord
from ..orchestration.report.summary import scenario_label
from ..task import Task
from .cache import ResultCache, finite_json
from .models import Resolved, UIError, resolve_model, resolve_pair, task_label

LM = "causal_lm"
MODALITIES = [LM]
#: the probe families and the eval set each reads (relearning reads the forget set)
PROBE_SETS = {"paraphrase": "forget_paraphrase", "alias": "forget_alias", "multihop": "forget_multihop"}
PROBE_MEASURES = ("rouge", "exact", "prob")
RELEARN_MEASURES = ("rouge", "exact", "prob", "gain_rouge", "gain_prob")
#: the relearning attack fine-tunes a copy of the model: computed here only up to this size
RELEARN_MAX_PARAMS = 20_000_000
#: ... and on forget sets of at most this many questions (it trains on half of them at once)
RELEARN_MAX_FORGET = 1000
#: the catalogue's goals as the page's column goals
GOAL = {"higher": "max", "lower": "min", "reference": "reference"}
#: the splits of the question browser
SPLITS = ("forget", "retain")


# --------------------------------------------------------------------------- helpers


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _modality(run: RunRecord) -> str:
    try:
        return modality_of_spec(run.task_spec).name
    except UnlearnkitError:
        return str((run.task_spec or {}).get("modality", ""))


def _task_label(run: RunRecord) -> str:
    try:
        return modality_of_spec(run.task_spec).task_label(run.task_spec or {})
    except Exception:  # noqa: BLE001 - a label is never worth an error
        return str((run.task_spec or {}).get("source", "task"))


def _is_reference(run: RunRecord) -> bool:
    return run.kind == "reference" or run.method == "retrain"


def _cache(ws: Workspace) -> ResultCache:
    return ResultCache.of(ws)


def _artifact(m: Resolved) -> str:
    return m.artifact or f"unsaved:{m.id}"


def _require_lm(task: Task) -> None:
    if task.modality != LM:
        raise UIError(
            422,
            f"the language-model views need a causal-LM task; this is a {task.modality} task "
            "(open its own view from the pair's `views`)",
            "wrong-view",
        )


def _goal(key: str) -> str | None:
    g = catalogue.metric_goal(key, MODALITIES)
    return GOAL.get(g) if g else None


# --------------------------------------------------------------------------- overview
def _run_row(run: RunRecord, headline: list[str]) -> dict:
    m = run.metrics or {}
    return {
        "id": run.id,
        "kind": run.kind,
        "method": run.method,
        "params": finite_json(run.params or {}),
        "seed": int(run.seed),
        "status": run.status,
        "task_key": run.task_key,
        "task_label": _task_label(run),
        "scenario_label": scenario_label(run.scenario) if run.scenario else "none",
        "forget_fingerprint": run.forget_fingerprint,
        "created_at": run.created_at,
        "parent": run.parent,
        "is_reference": _is_reference(run),
        "forget_quality": _number(m.get("forget_quality")),
        "model_utility": _number(m.get("model_utility")),
        "metrics": {k: _number(m[k]) for k in headline if k in m},
    }


def _group_reference(rows: list[dict]) -> dict:
    refs = [r for r in rows if r["is_reference"] and r["status"] == "ok"]
    scored = [r for r in refs if r["model_utility"] is not None] or refs
    if scored:
        r = scored[0]  # newest first
        return {
            "run": r["id"],
            "source": "run",
            "forget_quality": r["forget_quality"] if r["forget_quality"] is not None else 1.0,
            "model_utility": r["model_utility"],
            "metrics": r["metrics"],
            "why": None if r["model_utility"] is not None else f"retrain run {r['id']} stored no model utility",
        }
    return {
        "run": None,
        "source": "definition",
        "forget_quality": 1.0,  # the KS test of the reference's truth ratios against themselves
        "model_utility": None,
        "metrics": {},
        "why": "no retrain run of this task and forget set is stored, so the reference's model utility is "
        "unknown (`unlearnkit unlearn --from <train run> --method retrain --evaluate` stores one); "
        "its forget quality is 1 by definition",
    }


def overview(ws: Workspace) -> dict:
    """Forget quality vs model utility of every causal-LM run, as stored (TOFU's figure).

    ``{"runs": [{id, kind, method, params, seed, status, task_key, task_label, scenario_label,
    forget_fingerprint, created_at, parent, is_reference, forget_quality, model_utility,
    metrics: {headline key: number | None}}], "groups": [{task_key, forget_fingerprint,
    task_label, scenario_label, runs: [id], reference}], "reference": <the reference of the
    only group> | None, "columns": [{key, label, goal, help}], "threshold": 0.05}``, newest
    first. A run's ``forget_quality`` / ``model_utility`` are None when it stored none (a
    train run, a run not evaluated). 404 ``no-lm-runs`` when the store has no LM run.
    """
    headline = catalogue.headline_metrics(MODALITIES)
    runs = [r for r in ws.store.list() if _modality(r) == LM]
    if not runs:
        raise UIError(
            404,
            "this workspace has no language-model runs; train one with "
            "`unlearnkit train --task profiles` and unlearn it",
            "no-lm-runs",
        )
    rows = [_run_row(r, headline) for r in runs]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] == "train":
            continue  # an original belongs to every forget set of its task
        groups.setdefault((r["task_key"], r["forget_fingerprint"]), []).append(r)
    out_groups = [
        {
            "task_key": key[0],
            "forget_fingerprint": key[1],
            "task_label": members[0]["task_label"],
            "scenario_label": members[0]["scenario_label"],
            "runs": [r["id"] for r in members],
            "reference": _group_reference(members),
        }
        for key, members in groups.items()
    ]
    keys = ["forget_quality", "model_utility", *[k for k in headline if k not in ("forget_quality", "model_utility")]]
    columns = [
        {"key": k, "label": k, "goal": _goal(k), "help": catalogue.metric_help(k, MODALITIES)}
        for k in keys
        if k in ("forget_quality", "model_utility") or any(k in r["metrics"] for r in rows)
    ]
    return finite_json(
        {
            "runs": rows,
            "groups": out_groups,
            "reference": out_groups[0]["reference"] if len(out_groups) == 1 else None,
            "columns": columns,
            "threshold": 0.05,  # TOFU: forget quality above it = indistinguishable from the reference
        }
    )


# --------------------------------------------------------------------------- the pair's reference
def _pair(ws: Workspace, a: str, b: str | None) -> tuple[Resolved, Resolved, Resolved | None, str | None]:
    """Both models, and the retrained reference of their task (None with the reason when
    there is none: two originals, or a reference not trained on a read-only workspace)."""
    ma, mb = resolve_pair(ws, a, b)
    _require_lm(ma.task)
    for m in (ma, mb):
        if m.kind == "reference" or (m.kind == "run" and m.record.kind == "reference"):
            return ma, mb, m, None
    owner = next((m for m in (ma, mb) if m.forget_fingerprint is not None), None)
    if owner is None:
        return ma, mb, None, "neither model has a forget set, so there is no retrained reference to compare with"
    try:
        ref = resolve_model(ws, f"reference:{owner.record.id}")
    except UIError as e:
        return ma, mb, None, e.detail
    return ma, mb, ref, None


def _split_params(task: Task) -> dict:
    return {"forget": task.split.forget_fingerprint, "holdout": task.holdout.fingerprint}


def _model_json(m: Resolved | None) -> dict | None:
    return None if m is None else m.to_json()


def _task_json(task: Task) -> dict:
    return {
        "key": task.key,
        "label": task_label(task),
        "modality": task.modality,
        "scenario_label": scenario_label(task.split.scenario),
        "n_forget": len(task.forget),
    }


# --------------------------------------------------------------------------- probes
def _probe_keys(task: Task) -> list[tuple[str, str, str]]:
    """``(key, probe, measure)`` of every probe the task has, in catalogue order."""
    out = [(f"{p}_{m}", p, m) for p, name in PROBE_SETS.items() if name in task.eval_sets for m in PROBE_MEASURES]
    if len(task.forget) >= 2:
        out += [(f"relearn_{m}", "relearn", m) for m in RELEARN_MEASURES]
    return out


def _stored(m: Resolved) -> dict[str, float | None]:
    """The probe values stored for model ``m``: a run's own metrics; for ``reference:<run>``
    the relearning attack on the reference that run's evaluation stored (``relearn_ref_*``)."""
    metrics = m.record.metrics or {}
    if m.kind == "run":
        return {k: v for k, v in metrics.items() if k.split("_", 1)[0] in (*PROBE_SETS, "relearn")}
    if m.kind == "reference":
        return {f"relearn_{k[len('relearn_ref_') :]}": v for k, v in metrics.items() if k.startswith("relearn_ref_")}
    return {}


def _probe_scores(m: Resolved, task: Task) -> dict[str, float]:
    from ..modalities.causal_lm.metrics import lm_probes
    from ..modalities.causal_lm.scores import score_lm_splits

    names = [n for n in PROBE_SETS.values() if n in task.eval_sets]
    if not names:
        return {}
    table = score_lm_splits(m.model, task, names=names)
    return lm_probes(EvalInputs(model=table, seed=int(m.record.seed), modality=LM))


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _relearn_why(m: Resolved, task: Task) -> str | None:
    """Why the relearning attack is not computed here for ``m`` (None: it is cheap enough)."""
    n = _n_params(m.model)
    hint = (
        f"run `unlearnkit evaluate {m.record.id}` to store it"
        if m.kind == "run"
        else "evaluate a run of this task to store the attack on its reference"
    )
    if n > RELEARN_MAX_PARAMS:
        return (
            f"not stored, and the relearning attack fine-tunes a copy of the model ({n:,} parameters, "
            f"above the comparator's limit of {RELEARN_MAX_PARAMS:,}); {hint}"
        )
    if len(task.forget) > RELEARN_MAX_FORGET:
        return (
            f"not stored, and the relearning attack trains on half of {len(task.forget)} forget questions "
            f"at once (the comparator computes it up to {RELEARN_MAX_FORGET}); {hint}"
        )
    return None


def _relearn(m: Resolved, task: Task) -> dict[str, float]:
    from ..modalities.causal_lm.attacks import lm_relearn
    from ..modalities.causal_lm.scores import score_lm_splits

    table = score_lm_splits(m.model, task, names=["forget"])  # the half's values before the attack
    return lm_relearn(
        EvalInputs(model=table, seed=int(m.record.seed), modality=LM, models={"model": m.model, "task": task})
    )


def _probe_values(ws: Workspace, m: Resolved, task: Task, keys: list[tuple[str, str, str]]) -> dict:
    """``{key: {"value", "source": "stored"|"computed"|None, "why"}}`` for model ``m``."""
    stored = _stored(m)
    out: dict[str, dict] = {}
    for key, _, _ in keys:
        if key in stored and _number(stored[key]) is not None:
            out[key] = {"value": _number(stored[key]), "source": "stored", "why": None}
    missing = {probe for key, probe, _ in keys if key not in out}
    params = {**_split_params(task), "seed": int(m.record.seed)}
    cache = _cache(ws)

    def fill(group: str, compute: Callable[[], dict]) -> None:
        got = cache.get_or_compute(f"lm.probes.{group}", [_artifact(m)], task.key, params, compute)
        for key, probe, _ in keys:
            if key in out or (probe == "relearn") != (group == "relearn"):
                continue
            v = _number((got or {}).get(key))
            out[key] = {
                "value": v,
                "source": "computed" if v is not None else None,
                "why": None if v is not None else "not computed on this task (the metric gave no number)",
            }

    if missing & set(PROBE_SETS):
        fill("sets", lambda: _probe_scores(m, task))
    if "relearn" in missing:
        why = _relearn_why(m, task)
        if why is None:
            fill("relearn", lambda: _relearn(m, task))
        else:
            for key, probe, _ in keys:
                if probe == "relearn" and key not in out:
                    out[key] = {"value": None, "source": None, "why": why}
    return out


def probes(ws: Workspace, a: str, b: str | None = None) -> dict:
    """Probe results of two models and the retrained reference.

    ``{"a": Model, "b": Model, "reference": Model | None, "reference_why": str | None,
    "task": {key, label, modality, scenario_label, n_forget}, "probes": [{name, probe,
    measure, goal, help, a, b, reference, gap_a, gap_b, source: {a, b, reference}, why: {a,
    b, reference}}], "missing": [{probe, why}]}``. ``gap_*`` = the model's value minus the
    reference's (the goal of every probe is the reference's value). A value is None only
    with a ``why``.
    """
    ma, mb, ref, ref_why = _pair(ws, a, b)
    task = ma.task
    keys = _probe_keys(task)
    memo: dict[str, dict] = {}

    def values(m: Resolved | None) -> dict:
        if m is None:
            return {}
        k = repr((m.kind, m.record.id, _artifact(m)))
        if k not in memo:
            memo[k] = _probe_values(ws, m, task, keys)
        return memo[k]

    va, vb, vr = values(ma), values(mb), values(ref)
    rows = []
    for key, probe, measure in keys:
        cell = {"a": va.get(key), "b": vb.get(key), "reference": vr.get(key)}
        val = {s: (c or {}).get("value") for s, c in cell.items()}
        why = {s: (c["why"] if c else ref_why) for s, c in cell.items()}
        r = val["reference"]
        rows.append(
            {
                "name": key,
                "probe": probe,
                "measure": measure,
                "goal": _goal(key),
                "help": catalogue.metric_help(key, MODALITIES),
                **val,
                "gap_a": None if val["a"] is None or r is None else val["a"] - r,
                "gap_b": None if val["b"] is None or r is None else val["b"] - r,
                "source": {s: (c or {}).get("source") for s, c in cell.items()},
                "why": why,
            }
        )
    missing = [
        {"probe": p, "why": f"the task has no {name} set (its data carries no {p} questions)"}
        for p, name in PROBE_SETS.items()
        if name not in task.eval_sets
    ]
    if len(task.forget) < 2:
        missing.append({"probe": "relearn", "why": "the relearning attack needs at least 2 forget questions"})
    return finite_json(
        {
            "a": ma.to_json(),
            "b": mb.to_json(),
            "reference": _model_json(ref),
            "reference_why": ref_why,
            "task": _task_json(task),
            "probes": rows,
            "missing": missing,
        }
    )


# --------------------------------------------------------------------------- questions
def _split_data(task: Task, split: str):
    """The question set of ``split``: the forget set, or the retain questions the metrics
    score for utility (the ``retain_eval`` sample; the whole retain set without one)."""
    if split not in SPLITS:
        raise UIError(422, f"split must be one of {', '.join(SPLITS)}, not {split!r}", "bad-split")
    if split == "forget":
        return task.forget
    return task.eval_sets.get("retain_eval", task.retain)


def _answer_span(data, i: int) -> tuple[int, int]:
    pos = torch.nonzero(data.labels[i] != -100).flatten()
    if len(pos) == 0:
        raise UIError(422, f"example {data.example_ids[i]} has no answer tokens", "task")
    return int(pos[0]), int(pos[-1]) + 1


def _question_text(tok, data, i: int, start: int) -> str:
    """The question as written: the prompt decoded, the task's template taken off."""
    text = tok.decode(data.inputs[i, :start].tolist(), skip_special_tokens=True)
    template = str((data.meta or {}).get("template") or "{question}")
    pre, _, post = template.partition("{question}")
    if text.startswith(pre) and text.endswith(post):
        text = text[len(pre) : len(text) - len(post)] if post else text[len(pre) :]
    return text.strip()


def _answer_text(tok, ids: list[int]) -> str:
    return tok.decode([t for t in ids if t != tok.eos_token_id], skip_special_tokens=True).strip()


def _rows(task: Task, split: str) -> list[dict]:
    data = _split_data(task, split)
    tok = task.adapter.tokenizer
    out = []
    for i in range(len(data)):
        s, e = _answer_span(data, i)
        out.append(
            {
                "index": i,
                "id": str(data.example_ids[i]),
                "question": _question_text(tok, data, i, s),
                "answer": _answer_text(tok, data.inputs[i, s:e].tolist()),
            }
        )
    return out


def questions(ws: Workspace, a: str, b: str | None, split: str) -> dict:
    """``{"split", "n", "questions": [{index, id, question, answer}]}``: the forget or retain
    questions of the pair's task (``index`` = position in the set, what :func:`question` takes)."""
    ma, _ = resolve_pair(ws, a, b)
    task = ma.task
    _require_lm(task)
    data = _split_data(task, split)
    params = {"split": split, "set": data.fingerprint}
    rows = _cache(ws).get_or_compute("lm.questions", [], task.key, params, lambda: _rows(task, split))
    return {"split": split, "n": len(rows), "questions": rows}


def _token_text(tok, t: int) -> str:
    return tok.decode([int(t)], skip_special_tokens=False)


@torch.no_grad()
def _answer_logprobs(model: torch.nn.Module, task: Task, row) -> tuple[list[int], list[float]]:
    """The true answer's token ids and ``log p(token | question, answer before it)`` of each
    (teacher forcing with the task adapter's ``token_log_probs``, the evaluation's own)."""
    was = model.training
    model.eval()
    try:
        batch = next(row.batches(1))
        lp, mask = task.adapter.token_log_probs(model, batch)
    finally:
        model.train(was)
    m = mask[0].cpu()
    ids = batch["labels"][0][m].tolist()
    return [int(t) for t in ids], lp[0].cpu()[m].double().tolist()


def _greedy(model: torch.nn.Module, task: Task, row) -> str:
    from ..modalities.causal_lm.scores import generate_answers

    was = model.training
    model.eval()
    try:
        return generate_answers(model, row, task.adapter.tokenizer, task.adapter.device)[0]
    finally:
        model.train(was)


def _model_answer(ws: Workspace, m: Resolved, task: Task, split: str, index: int) -> dict:
    data = _split_data(task, split)
    row = data.take([index])
    tok = task.adapter.tokenizer

    def compute() -> dict:
        from ..modalities.causal_lm.formulas import rouge_l_recall

        ids, lps = _answer_logprobs(m.model, task, row)
        greedy = _greedy(m.model, task, row)
        answer = _answer_text(tok, ids)
        return {
            "greedy": greedy,
            "token_ids": ids,
            "tokens": [_token_text(tok, t) for t in ids],
            "logprobs": lps,
            "mean_logprob": float(np.mean(lps)) if lps else None,
            "rouge": float(rouge_l_recall(greedy, answer)),
            "exact": greedy == answer,
        }

    params = {"split": split, "set": data.fingerprint, "index": int(index), "id": str(data.example_ids[index])}
    return _cache(ws).get_or_compute("lm.question", [_artifact(m)], task.key, params, compute)


def question(ws: Workspace, a: str, b: str | None, split: str, index: int) -> dict:
    """One question and what each model makes of it.

    ``{"split", "index", "id", "question", "answer", "answer_tokens": [str], "a": Answer,
    "b": Answer, "reference": Answer | None, "reference_why": str | None, "diff_a": [number],
    "diff_b": [number] | None, "models": {a, b, reference: Model}}`` where ``Answer = {greedy:
    str, tokens: [str], token_ids: [int], logprobs: [number], mean_logprob, rouge, exact}``:
    the greedy answer (the evaluation's own ``generate_answers``), and per token of the true
    answer (eos included) its log-probability under the model; ``diff_a[t] = a.logprobs[t] -
    reference.logprobs[t]`` (None without a reference).
    """
    ma, mb, ref, ref_why = _pair(ws, a, b)
    task = ma.task
    data = _split_data(task, split)
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise UIError(422, f"index must be an integer, not {index!r}", "bad-index") from None
    if not 0 <= index < len(data):
        raise UIError(
            404, f"no question {index} in the {split} set: it has {len(data)} (0..{len(data) - 1})", "unknown-question"
        )
    s, e = _answer_span(data, index)
    tok = task.adapter.tokenizer
    answers = {side: _model_answer(ws, m, task, split, index) for side, m in (("a", ma), ("b", mb))}
    answers["reference"] = _model_answer(ws, ref, task, split, index) if ref is not None else None

    def diff(side: str) -> list[float] | None:
        r = answers["reference"]
        if r is None:
            return None
        return [x - y for x, y in zip(answers[side]["logprobs"], r["logprobs"])]

    return finite_json(
        {
            "split": split,
            "index": index,
            "id": str(data.example_ids[index]),
            "question": _question_text(tok, data, index, s),
            "answer": _answer_text(tok, data.inputs[index, s:e].tolist()),
            "answer_tokens": answers["a"]["tokens"],
            **answers,
            "reference_why": ref_why,
            "diff_a": diff("a"),
            "diff_b": diff("b"),
            "models": {"a": ma.to_json(), "b": mb.to_json(), "reference": _model_json(ref)},
        }
    )


__all__ = ["overview", "probes", "questions", "question"]
