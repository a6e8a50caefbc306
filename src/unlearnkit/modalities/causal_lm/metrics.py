"""Causal-LM metrics computed from :class:`~.scores.LMScores`, in the shared metric catalogue.

Registered for causal-LM inputs only (``EvalInputs.modality == "causal_lm"``) and computed by
``evaluate_model`` / ``compare`` like the classifier metrics: TOFU's values, forget quality
and model utility, verbatim memorisation, membership attacks and MUSE's PrivLeak, and the
paraphrase / alias / multi-hop probes. Importing this module also registers the metrics that
run a model again (:mod:`.attacks`: relearning, FADE).

Quantities several metrics share are computed once per inputs through
:meth:`EvalInputs.memo` (TOFU's values feed ``tofu`` and ``tofu_model_utility``).

A headline value that cannot be computed is never silently left out: its key is present
with NaN and :func:`not_computed` says why (e.g. a forget set without paraphrased and
perturbed answers has no truth ratio, hence no forget quality).

Metric sources: TOFU (Maini et al. 2024; official code locuslab/tofu
``aggregate_eval_stat.py``), MUSE (Shi et al. 2024; official code swj0419/muse_bench, and
OpenUnlearning's reproduction), OpenUnlearning (locuslab/open-unlearning).
"""

from __future__ import annotations

import re

import numpy as np

from ...evaluation.metrics import NAN, EvalInputs, register_metric, register_outputs
from . import attacks  # noqa: F401  (registers the relearning attack and FADE)
from . import formulas as lmm
from .scores import mean_finite as _mean

LM = ("causal_lm",)
PROBES = ("forget_paraphrase", "forget_alias", "forget_multihop")
UTILITY = {"retain": "retain", "other": "real_authors", "world": "world_facts"}
#: sets whose truth ratio divides by the paraphrased answer (TOFU's forget and retain sets);
#: on ``other`` (Real Authors) and ``world`` (World Facts) TOFU divides by the answer itself
PARAPHRASE_BASED = ("forget", "retain")
TOFU_SETS = ("forget", "retain", "other", "world")
_PERT = re.compile(r"@pert(\d+)$")


# --------------------------------------------------------------------------- answer variants
def _variant_base(table: dict, name: str) -> str:
    """The eval-set name whose ``@para``/``@pert`` variants belong to split ``name``."""
    return "retain_eval" if name == "retain" and any(k.startswith("retain_eval@") for k in table) else name


def _perturbed_keys(table: dict, base: str) -> list[str]:
    found = [(_PERT.search(k), k) for k in table if k.startswith(f"{base}@pert")]
    return [k for _, k in sorted(((int(m.group(1)), k) for m, k in found if m), key=lambda t: t[0])]


def _variants(table: dict, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean answer log-probs of the base answers ``(N,)`` and perturbed answers ``(N, K)`` of
    ``name``'s questions, in ``table[name]``'s order; None when the set has no variants.

    The base answer is TOFU's (locuslab/tofu ``config/eval_everything.yaml``,
    ``base_answer_key``): the paraphrased answer (``<set>@para``) on forget and retain, the
    answer itself (``table[name]``) on ``other`` (Real Authors) and ``world`` (World Facts),
    whose perturbed answers are written in the answer's own form (like with like).
    """
    if name not in table:
        return None
    base = _variant_base(table, name)
    perts = _perturbed_keys(table, base)
    if not perts:
        return None
    ids = np.asarray(table[name].example_ids).astype(str)
    if name in PARAPHRASE_BASED:
        para = table.get(f"{base}@para")
        if para is None:
            return None
        true = para.reindex(ids).mean_logprob
    else:
        true = table[name].mean_logprob
    return true, np.stack([table[k].reindex(ids).mean_logprob for k in perts], axis=1)


def truth_ratios(table: dict, name: str) -> np.ndarray | None:
    """TOFU truth ratios ``R`` of the questions of ``name`` (see :func:`formulas.truth_ratio`):
    ``R = exp(mean_k lp_pert_k - lp_base)`` with the base answer of :func:`_variants` (the
    paraphrased answer on forget / retain, the answer itself on other / world)."""
    v = _variants(table, name)
    return None if v is None else lmm.truth_ratio(*v)


def _why_no_variants(table: dict, name: str) -> str:
    base = _variant_base(table, name)
    if name in PARAPHRASE_BASED and f"{base}@para" not in table:
        return (
            f"the {name} set has no paraphrased answers (a TOFU folder needs its *_perturbed files: "
            f"paraphrased_answer and perturbed_answer)"
        )
    return f"the {name} set has no perturbed answers (perturbed_answer)"


def tofu_values(table: dict) -> dict[str, float]:
    """TOFU's per-set values (see :func:`tofu`) of one model's score table: present sets only;
    a value that cannot be computed is NaN (:func:`not_computed` says why)."""
    out: dict[str, float] = {}
    for name in TOFU_SETS:
        if name not in table:
            continue
        s = table[name]
        v = _variants(table, name)
        if name in ("other", "world"):  # TOFU's option probability; without perturbed answers: NaN
            out[f"prob_{name}"] = NAN if v is None else float(np.mean(lmm.option_probability(*v)))
        else:
            out[f"prob_{name}"] = float(np.mean(s.prob))
        out[f"rouge_{name}"] = _mean(s.rouge) if s.rouge is not None else NAN
        out[f"truth_ratio_{name}"] = (
            NAN if v is None else lmm.truth_ratio_score(lmm.truth_ratio(*v), "forget" if name == "forget" else "retain")
        )
    return out


def _tofu_memo(inputs: EvalInputs) -> dict[str, float]:
    return inputs.memo("tofu_values", lambda: tofu_values(inputs.model))


def not_computed(inputs: EvalInputs) -> dict[str, str]:
    """The headline LM values of ``inputs`` that cannot be computed, each with why.

    Covers TOFU's values on the sets present, ``forget_quality`` and ``model_utility``; an
    empty dict means every one of them has a number. What ``evaluate_model`` shows beside
    the metrics so that a missing headline value is visible, never a silent skip.
    """
    t = inputs.model
    out: dict[str, str] = {}
    for name in TOFU_SETS:
        if name not in t:
            continue
        if t[name].rouge is None:
            out[f"rouge_{name}"] = f"no greedy generations on the {name} set"
        if _variants(t, name) is None:
            out[f"truth_ratio_{name}"] = _why_no_variants(t, name)
            if name in ("other", "world"):
                out[f"prob_{name}"] = f"TOFU's option probability needs perturbed answers; {_why_no_variants(t, name)}"
    if "forget" in t:
        if "truth_ratio_forget" in out:
            out["forget_quality"] = out["truth_ratio_forget"]
        elif inputs.reference is None:
            out["forget_quality"] = "no reference (retrained) model to compare with"
        elif _variants(inputs.reference, "forget") is None:
            out["forget_quality"] = "the reference's scores lack the forget set's answer variants"
    missing = [s for s in UTILITY if s not in t]
    if missing:
        out["model_utility"] = f"no {', '.join(missing)} evaluation set"
    else:
        bad = [k for k in (f"{m}_{s}" for s in UTILITY for m in ("prob", "rouge", "truth_ratio")) if k in out]
        if bad:
            out["model_utility"] = f"{', '.join(bad)} not computed: {out[bad[0]]}"
    return out


# --------------------------------------------------------------------------- TOFU
_SET_NAMES = {
    "forget": "the forget set",
    "retain": "the retain set",
    "other": "other people (TOFU's real authors)",
    "world": "world facts",
}
_TOFU_OUT = {
    "prob_forget": "reference",
    "rouge_forget": "reference",
    "truth_ratio_forget": "reference",
    **{f"{m}_{s}": "higher" for s in ("retain", "other", "world") for m in ("prob", "rouge", "truth_ratio")},
}


@register_metric(
    "tofu",
    _TOFU_OUT,
    "Maini et al. 2024 (TOFU: A Task of Fictitious Unlearning for LLMs), Sec. 2.5; official code "
    "locuslab/tofu aggregate_eval_stat.get_model_utility.",
    splits=("forget",),
    modalities=LM,
    order=42,
    headline=("rouge_forget",),
    shares=("tofu_values",),
    help={
        **{
            f"prob_{s}": (
                f"mean answer probability (length-normalised) on {d}"
                if s in PARAPHRASE_BASED
                else f"TOFU's option probability on {d}: the answer's against perturbed answers of its form",
                "the reference's" if s == "forget" else "high",
            )
            for s, d in _SET_NAMES.items()
        },
        **{
            f"rouge_{s}": (
                f"ROUGE-L recall of the greedy answer against the true one on {d}",
                "the reference's" if s == "forget" else "high",
            )
            for s, d in _SET_NAMES.items()
        },
        **{
            f"truth_ratio_{s}": (
                f"TOFU truth ratio score (perturbed vs paraphrased answers) on {d}"
                if s in PARAPHRASE_BASED
                else f"TOFU truth ratio score (perturbed answers vs the answer) on {d}",
                "the reference's" if s == "forget" else "high",
            )
            for s, d in _SET_NAMES.items()
        },
    },
)
def tofu(inputs: EvalInputs) -> dict[str, float]:
    """TOFU's answer probability, ROUGE-L recall and truth ratio on forget, retain, other and world.

    Per set s (``retain`` = the ``retain_eval`` sample; ``other`` = the never-forgotten other
    people, TOFU's Real Authors; ``world`` = world facts): ``prob_s`` = mean of
    ``P(y|x)^(1/|y|)`` on forget and retain, and on other / world TOFU's option probability
    ``p_answer / (p_answer + sum_k p_pert_k)`` over perturbed answers in the answer's own form;
    ``rouge_s`` = mean ROUGE-L recall of the greedy answer (``rouge-score`` with the Porter
    stemmer, as TOFU); ``truth_ratio_s`` from ``R = exp(mean_k lp_pert_k - lp_base)`` (mean
    token log-probs), where the base answer is the paraphrased answer on forget and retain
    and the answer itself on other and world (TOFU's ``base_answer_key``):
    ``mean(min(R, 1/R))`` on forget and ``mean(max(0, 1 - R))`` elsewhere, exactly TOFU's code
    (which writes it with ``1/R``: ``min(r, 1/r)`` and ``max(0, 1 - 1/r)`` for ``r = 1/R``).
    Keys of absent sets are left out; a value that cannot be computed is NaN and
    :func:`not_computed` says why. Forget values are best close to the reference's.
    """
    return dict(_tofu_memo(inputs))


@register_metric(
    "tofu_forget_quality",
    {"forget_quality": "higher", "forget_ks_stat": "lower"},
    "Maini et al. 2024 (TOFU), Sec. 2.5 'Forget Quality'; locuslab/tofu aggregate_eval_stat.get_forget_quality.",
    needs=("reference",),
    splits=("forget",),
    modalities=LM,
    order=40,
    headline=("forget_quality",),
    help={
        "forget_quality": (
            "KS-test p-value of the forget set's truth ratios against the reference's "
            "(TOFU's forget quality, Maini et al. 2024)",
            "high (above 0.05: indistinguishable from the reference)",
        ),
        "forget_ks_stat": ("the KS statistic behind forget_quality", "→ 0"),
    },
)
def tofu_forget_quality(inputs: EvalInputs) -> dict[str, float]:
    """TOFU forget quality: KS-test p-value of the forget-set truth ratios, model vs reference.

    ``scipy.stats.ks_2samp`` of the per-question truth ratios ``R`` on the forget set of the
    evaluated model and of the retrained reference (``forget_quality`` = p-value, high =
    indistinguishable; ``forget_ks_stat`` = KS statistic). TOFU tests ``1/R``; the KS test is
    invariant to that monotone map. The reference against itself gives 1.0. NaN when the
    forget set has no paraphrased / perturbed answers (:func:`not_computed` says why).
    """
    a, b = truth_ratios(inputs.model, "forget"), truth_ratios(inputs.reference, "forget")
    if a is None or b is None:
        return {"forget_quality": NAN, "forget_ks_stat": NAN}
    p, stat = lmm.forget_quality(a, b)
    return {"forget_quality": p, "forget_ks_stat": stat}


@register_metric(
    "tofu_model_utility",
    {"model_utility": "higher"},
    "Maini et al. 2024 (TOFU), Sec. 2.5 'Model Utility'; locuslab/tofu aggregate_eval_stat.get_model_utility.",
    splits=("forget",),
    modalities=LM,
    order=41,
    headline=True,
    shares=("tofu_values",),
    help={
        "model_utility": (
            "TOFU model utility: harmonic mean of answer probability, ROUGE-L recall and "
            "truth ratio on retain, other people and world facts",
            "high, close to the original's",
        )
    },
)
def tofu_model_utility(inputs: EvalInputs) -> dict[str, float]:
    """TOFU model utility: harmonic mean of the nine retain / other / world values of ``tofu``.

    ``hmean`` of {prob, rouge, truth_ratio} x {retain, other (Real Authors), world (World
    Facts)} as computed by the ``tofu`` metric (:func:`formulas.model_utility`), from the same
    values (computed once per inputs). NaN when a set or one of the nine values is missing
    (:func:`not_computed` says which and why).
    """
    vals = _tofu_memo(inputs)
    need = {f"{UTILITY[s]}_{m}": f"{m}_{s}" for s in UTILITY for m in ("prob", "rouge", "truth_ratio")}
    if any(v not in vals or np.isnan(vals[v]) for v in need.values()):
        return {"model_utility": NAN}
    return {"model_utility": lmm.model_utility({k: vals[v] for k, v in need.items()})}


# --------------------------------------------------------------------------- memorisation
@register_metric(
    "lm_memorization",
    {"em_forget": "reference", "es_forget": "reference", "exact_forget": "reference", "exact_retain": "higher"},
    "Tirumala et al. 2022 (NeurIPS), exact memorisation; Wang et al. 2025 (ICLR), extraction strength; "
    "both as implemented in OpenUnlearning (locuslab/open-unlearning, memorization.py).",
    splits=("forget",),
    modalities=LM,
    order=43,
    help={
        "em_forget": (
            "exact memorisation: share of forget answer tokens predicted given the true prefix",
            "the reference's value",
        ),
        "es_forget": (
            "extraction strength: share of the forget answer needed as prefix to extract the rest",
            "the reference's value",
        ),
        "exact_forget": ("share of forget answers the greedy generation reproduces exactly", "the reference's value"),
        "exact_retain": ("share of retain answers the greedy generation reproduces exactly", "high"),
    },
)
def lm_memorization(inputs: EvalInputs) -> dict[str, float]:
    """Verbatim memorisation of the forget answers: exact memorisation, extraction strength, exact match.

    Means over the forget set of: ``em_forget`` = ``(1/|y|) sum_t 1[argmax p(.|x, y_<t) = y_t]``
    (teacher forcing); ``es_forget`` = ``1 - k*/|y|`` with ``k*`` the shortest true answer
    prefix from which greedy decoding completes the answer (paper definition: 0 when even the
    last token is missed; OpenUnlearning stops at ``1/|y|``); ``exact_forget`` = share of
    answers greedy decoding reproduces exactly through eos. ``exact_retain`` the same on the
    retain sample (utility). As in OpenUnlearning, EM and ES leave out each answer's final
    eos token (its ``tokenwise_vocab_logprobs`` drops the last labelled token); exact match
    keeps it. The reference's values are the target on forget.
    """
    f = inputs.model["forget"]
    out = {"em_forget": _mean(f.token_acc), "es_forget": _mean(f.extraction), "exact_forget": _mean(f.exact)}
    if "retain" in inputs.model:
        out["exact_retain"] = _mean(inputs.model["retain"].exact)
    return out


# --------------------------------------------------------------------------- MIA / PrivLeak
_ATTACKS = {"loss": "mia_loss", "zlib": "mia_zlib", "min_k": "mia_min_k", "min_k_pp": "mia_min_k_pp"}


def _auc(table: dict, attr: str) -> float:
    return lmm.mia_auc(getattr(table["forget"], attr), getattr(table["holdout"], attr))


@register_metric(
    "lm_mia",
    {**{f"mia_{a}_auc": "reference" for a in _ATTACKS}, "mia_min_k_pvalue": "reference"},
    "Yeom et al. 2018 and Carlini et al. 2021 (LOSS, zlib); Shi et al. 2024 ICLR (Min-K% Prob); "
    "Zhang et al. 2024 arXiv:2404.02936 (Min-K%++); forget-vs-holdout AUC as in MUSE (Shi et al. 2024).",
    splits=("forget", "holdout"),
    modalities=LM,
    order=33,
    headline=("mia_loss_auc",),
    headline_group="membership AUC",
    help={
        **{
            f"mia_{a}_auc": (
                f"membership-inference AUC of the {n} attack on the answers, forget set "
                "(members) vs holdout (non-members)",
                "the reference's value (≈ 0.5: the attack cannot tell forget data from unseen data)",
            )
            for a, n in (("loss", "LOSS"), ("zlib", "zlib"), ("min_k", "Min-40%"), ("min_k_pp", "Min-40%++"))
        },
        "mia_min_k_pvalue": (
            "one-sided Mann-Whitney U p-value that forget Min-40% scores exceed holdout ones "
            "(uncertainty of the AUC on small sets)",
            "the reference's value",
        ),
    },
)
def lm_mia(inputs: EvalInputs) -> dict[str, float]:
    """Membership attacks on the answers: forget (members) vs holdout (never trained), ROC AUC.

    Scores (higher = member): LOSS = mean answer-token log-prob; zlib = that over the zlib
    length of the answer text; Min-40% = mean of the lowest 40% token log-probs; Min-40%++ the
    same on standardised log-probs (``(log p - mu) / sigma`` over the vocabulary); as in
    OpenUnlearning, LOSS and zlib score every answer token and Min-K% / Min-K%++ leave out the
    final eos token. AUC 0.5 =
    chance; ideal is the reference's value (forget and holdout rows need not be alike, e.g.
    alias questions). ``mia_min_k_pvalue``: one-sided Mann-Whitney U p-value that forget
    Min-40% scores exceed holdout ones (uncertainty of the AUC on small sets). MUSE uses
    Min-40%; Min-K%'s own default is 20%.
    """
    from scipy.stats import mannwhitneyu

    m = inputs.model
    out = {f"mia_{a}_auc": _auc(m, attr) for a, attr in _ATTACKS.items()}
    out["mia_min_k_pvalue"] = float(
        mannwhitneyu(m["forget"].mia_min_k, m["holdout"].mia_min_k, alternative="greater").pvalue
    )
    return out


@register_metric(
    "lm_privleak",
    {"privleak": "reference"},
    "Shi et al. 2024 (MUSE: Machine Unlearning Six-Way Evaluation for Language Models), PrivLeak; "
    "sign as in MUSE's tables and OpenUnlearning's privleak (AUCs taken as 1 - AUC).",
    needs=("reference",),
    splits=("forget", "holdout"),
    modalities=LM,
    order=45,
    headline=True,
    help={
        "privleak": (
            "MUSE PrivLeak: relative gap of the Min-K%++ / loss attack AUC (forget vs holdout) to "
            "the reference's, in percent",
            "0 (negative: under-unlearned, positive: over-unlearned)",
        )
    },
)
def lm_privleak(inputs: EvalInputs) -> dict[str, float]:
    """MUSE PrivLeak: relative change of the Min-40% forget-vs-holdout MIA AUC against the reference, in percent.

    ``PrivLeak = (AUC'_unlearn - AUC'_retrain) / AUC'_retrain * 100`` with MUSE's AUC
    orientation ``AUC' = 1 - AUC`` (MUSE labels forget as the negative class; OpenUnlearning
    flips likewise), i.e. ``(AUC_ref - AUC) / (1 - AUC_ref) * 100`` with this package's AUC
    (higher = members detected). 0 is ideal (the reference gives exactly 0); negative =
    under-unlearning (the forget set still looks like training data: MUSE's target models
    sit near -100), positive = over-unlearning. nan when the reference's AUC is 1.
    """
    a, r = _auc(inputs.model, "mia_min_k"), _auc(inputs.reference, "mia_min_k")
    if r >= 1.0:
        return {"privleak": NAN}
    return {"privleak": lmm.privleak(1.0 - a, 1.0 - r)}


# --------------------------------------------------------------------------- probes
_PROBE_OUT = {f"{p.split('_', 1)[1]}_{m}": "reference" for p in PROBES for m in ("rouge", "exact", "prob")}


@register_metric(
    "lm_probes",
    _PROBE_OUT,
    "Maini et al. 2024 (TOFU), paraphrased questions; Shah et al. 2026 (arXiv:2603.11266, 'The Unlearning "
    "Mirage'), alias and multi-hop probes of the same facts.",
    splits=("forget",),
    modalities=LM,
    order=44,
    headline=("paraphrase_rouge",),
    help={
        f"{p}_{m}": (
            f"probe: {what} ({how})",
            "the reference's value"
            + ("; above it means the knowledge only hid from the trained wording" if p == "paraphrase" else ""),
        )
        for p, what in (
            ("paraphrase", "reworded questions about the forget people (never trained)"),
            ("alias", "forget questions that name the person by an alias"),
            ("multihop", "forget questions that reach the person through a work's title"),
        )
        for m, how in (
            ("rouge", "ROUGE-L recall of the greedy answer"),
            ("exact", "exact-match share"),
            ("prob", "mean answer probability"),
        )
    },
)
def lm_probes(inputs: EvalInputs) -> dict[str, float]:
    """Forgetting under other wordings: paraphrased, alias and multi-hop questions about the forget people.

    On each probe set present (``forget_paraphrase``: reworded questions never trained;
    ``forget_alias`` / ``forget_multihop``: the forget rows reaching the person by an alias or a
    work's title): mean greedy ROUGE-L recall (``<probe>_rouge``), exact match (``<probe>_exact``)
    and normalised answer probability (``<probe>_prob``). A method that forgets only the
    trained wording keeps these high; the reference's values are the target.
    """
    out = {}
    for p in PROBES:
        if p in inputs.model:
            s, k = inputs.model[p], p.split("_", 1)[1]
            out[f"{k}_rouge"] = _mean(s.rouge) if s.rouge is not None else NAN
            out[f"{k}_exact"], out[f"{k}_prob"] = _mean(s.exact), _mean(s.prob)
    return out


# ------------------------------------------------------------- keys computed elsewhere
register_outputs(
    "lm_train",
    {"exact_match_train": "higher", "token_acc_train": "higher"},
    "Exact match and token accuracy of the trained original on its training answers.",
    "Teacher-forced answer accuracy (as in OpenUnlearning's exact memorisation).",
    computed_by="unlearnkit.modalities.causal_lm.task.train_metrics",
    modalities=LM,
    order=11,
    help={
        "exact_match_train": (
            "share of training answers the original predicts exactly (teacher-forced; train runs only)",
            "high",
        ),
        "token_acc_train": (
            "share of training answer tokens the original predicts (teacher-forced; train runs only)",
            "high",
        ),
    },
)
