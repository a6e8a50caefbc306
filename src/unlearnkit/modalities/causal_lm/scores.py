"""Per-example scores of a causal LM on a task's sets: teacher forcing and greedy generation.

:func:`score_lm_splits` (and :func:`score_model`, which the modality registry calls) runs a
causal LM over the sets of a causal-LM task (built by
:func:`~unlearnkit.modalities.causal_lm.task.make_lm_task`) and keeps, per example, the
quantities every LM metric derives from (:class:`LMScores`): one teacher-forced pass per set,
plus one batched greedy generation per set for ROUGE. The metrics themselves are in
:mod:`.metrics` (computed from these scores) and :mod:`.attacks` (those that train or
sample a model again).

Sets scored (keys of the returned dict, the "splits" of :class:`EvalInputs`):

* ``forget`` (members), ``holdout`` (never-trained non-members), ``retain`` (the
  ``retain_eval`` sample of the retain set, the retain-utility set; the whole retain set
  only when the task has no ``retain_eval``);
* every ``task.eval_sets`` entry: the probes (``forget_paraphrase``, ``forget_alias``,
  ``forget_multihop``), the utility sets (``retain_eval``, ``other``, ``world``) and the
  truth-ratio answer variants ``<set>@para`` / ``<set>@pert<j>`` (teacher-forced only:
  they share their base set's questions, so nothing is generated for them).

As the anchors compute them (OpenUnlearning, locuslab/open-unlearning
``src/evals/metrics/utils.py``: ``tokenwise_logprobs`` / ``tokenwise_vocab_logprobs`` drop
the last labelled token, "-1 to ignore eos prediction"): exact memorisation
(``token_acc``), extraction strength and the Min-K% / Min-K%++ scores are computed **without
the final end-of-sequence token** of each answer; the answer probability, the LOSS and zlib
scores (OpenUnlearning's ``evaluate_probability``, over every labelled token) and ``exact``
(greedy decoding reproduces the answer through its eos) keep it. Greedy generations for
ROUGE run for up to :data:`GEN_MAX_NEW_TOKENS` new tokens and stop at eos, as
OpenUnlearning's generation config does (``max_new_tokens: 200``, greedy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, DataError
from ...evaluation.metrics import NAN
from . import formulas as lmm

IGNORE = -100
#: Min-K% / Min-K%++ token fraction: MUSE's PrivLeak uses Min-40% (``forget_holdout_Min-40%``)
MIN_K = 0.4
#: greedy generation for ROUGE: at most this many new tokens, stopping at eos (OpenUnlearning's
#: ``configs/generation/default.yaml``: ``max_new_tokens: 200``; TOFU caps prompt + answer at 200)
GEN_MAX_NEW_TOKENS = 200


@dataclass
class LMScores:
    """Per-example quantities of one causal LM on one set, one row per example.

    All arrays are ``(N,)`` and aligned with ``example_ids``. Log-probabilities are over
    the answer tokens only, under teacher forcing: with the final eos for ``mean_logprob``,
    ``sum_logprob``, ``length``, ``exact`` and the LOSS / zlib scores, without it for
    ``token_acc``, ``extraction`` and the Min-K% / Min-K%++ scores (as OpenUnlearning).

    Attributes:
        mean_logprob: ``(1/|y|) sum_t log p(y_t | x, y_<t)``; also the LOSS attack score.
        sum_logprob: ``log p(y | x)``.
        length: ``|y|``, answer tokens.
        token_acc: share of answer tokens (final eos left out) that are the argmax next token
            given the true prefix = exact memorisation (Tirumala et al. 2022,
            :func:`formulas.exact_memorization`).
        exact: 1.0 when every answer token, eos included, is the argmax (= greedy decoding
            reproduces the answer through its eos), else 0.0.
        extraction: extraction strength over the answer without its final eos (Wang et al.
            2025, :func:`formulas.extraction_strength`).
        mia_zlib, mia_min_k, mia_min_k_pp: zlib (eos kept), Min-40% and Min-40%++ (eos left
            out) attack scores (higher = more likely a member; :mod:`formulas`).
        answers: the true answer texts.
        generations: greedy answers (None when not generated).
        rouge: ROUGE-L recall of the greedy answer against the true answer (nan when not generated).
    """

    example_ids: np.ndarray
    mean_logprob: np.ndarray
    sum_logprob: np.ndarray
    length: np.ndarray
    token_acc: np.ndarray
    exact: np.ndarray
    extraction: np.ndarray
    mia_zlib: np.ndarray
    mia_min_k: np.ndarray
    mia_min_k_pp: np.ndarray
    answers: np.ndarray
    generations: np.ndarray | None = None
    rouge: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def prob(self) -> np.ndarray:
        """TOFU's normalised answer probability ``P(y|x)^(1/|y|)``."""
        return np.exp(self.mean_logprob)

    @property
    def mia_loss(self) -> np.ndarray:
        return self.mean_logprob

    def reindex(self, ids: Sequence[str]) -> LMScores:
        """The rows of ``ids`` in that order (DataError if one is missing)."""
        ids = [str(i) for i in ids]
        own = np.asarray(self.example_ids).astype(str)
        if len(ids) == len(own) and np.array_equal(own, ids):
            return self
        pos = {e: i for i, e in enumerate(own.tolist())}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(f"LM scores lack example(s) {missing[:3]}; score both sets on the same task")
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        return LMScores(
            **{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx]) for f in fields(self)}
        )

    def rows(self, split: str, role: str) -> dict[str, np.ndarray]:
        """Columns for export (``--export-scores``): one row per example."""
        n = len(self)
        gen = self.generations if self.generations is not None else np.full(n, "", dtype=object)
        rouge = self.rouge if self.rouge is not None else np.full(n, NAN)
        return {
            "example_id": np.asarray(self.example_ids).astype(str),
            "split": np.full(n, split),
            "model_role": np.full(n, role),
            "mean_logprob": self.mean_logprob,
            "sum_logprob": self.sum_logprob,
            "answer_tokens": self.length,
            "prob": self.prob,
            "token_acc": self.token_acc,
            "exact": self.exact,
            "extraction_strength": self.extraction,
            "mia_zlib": self.mia_zlib,
            "mia_min_k": self.mia_min_k,
            "mia_min_k_pp": self.mia_min_k_pp,
            "rouge_l_recall": rouge,
            "answer": np.asarray(self.answers, dtype=object),
            "generation": np.asarray(gen, dtype=object),
        }


def _tokenizer(task_or_adapter):
    adapter = getattr(task_or_adapter, "adapter", task_or_adapter)
    tok = getattr(adapter, "tokenizer", None)
    if tok is None or tok.pad_token_id is None or tok.eos_token_id is None:
        raise ConfigError(
            "LM evaluation needs the task's tokenizer with pad and eos tokens: build the task with make_lm_task"
        )
    return tok


def _answer_spans(data) -> list[tuple[int, int]]:
    """Per example ``(start, end)``: answer positions ``[start, end)`` (labels != -100)."""
    lab = data.labels
    spans = []
    for i in range(len(lab)):
        pos = torch.nonzero(lab[i] != IGNORE).flatten()
        if len(pos) == 0:
            raise DataError(f"example {data.example_ids[i]} has no answer tokens; re-encode it with encode_qa")
        spans.append((int(pos[0]), int(pos[-1]) + 1))
    return spans


def _decode(tok, ids: Iterable[int]) -> str:
    return tok.decode([int(t) for t in ids if int(t) != tok.eos_token_id], skip_special_tokens=True).strip()


def drop_final_eos(mask: np.ndarray, targets: np.ndarray, eos_id: int) -> np.ndarray:
    """``mask`` without each row's last masked token when that token is ``eos_id`` and the
    row keeps at least one other token (OpenUnlearning's ``tokenwise_logprobs`` /
    ``tokenwise_vocab_logprobs`` drop the last labelled token, its eos, before exact
    memorisation, extraction strength, Min-K% and Min-K%++)."""
    m = np.asarray(mask).astype(bool).copy()
    for i in range(m.shape[0]):
        pos = np.flatnonzero(m[i])
        if len(pos) > 1 and int(targets[i, pos[-1]]) == int(eos_id):
            m[i, pos[-1]] = False
    return m


@torch.no_grad()
def _teacher_forced(model: nn.Module, data, adapter, tok, batch_size: int) -> dict[str, np.ndarray]:
    out: dict[str, list] = {
        k: []
        for k in (
            "mean_logprob",
            "sum_logprob",
            "length",
            "token_acc",
            "exact",
            "extraction",
            "mia_zlib",
            "mia_min_k",
            "mia_min_k_pp",
            "answers",
        )
    }
    for b in data.batches(batch_size):
        # every quantity below is read at answer positions only: compute the logits, the
        # log-softmax, Min-K%++'s mu / sigma and the argmax there (N rows instead of B * T)
        lab = b["labels"].to(adapter.device)
        keep = lab[:, 1:] != IGNORE
        flat = adapter.answer_logits(model, b)
        if flat is None:
            flat = adapter.logits(model, b)[:, :-1][keep]
        full = torch.log_softmax(flat.float(), -1)
        p = full.exp()
        safe = torch.where(p > 0, full, torch.zeros_like(full))
        mu_f = (p * safe).sum(-1)
        sigma_f = ((p * safe * safe).sum(-1) - mu_f * mu_f).clamp_min(0).sqrt()

        def at_answers(v: torch.Tensor, fill: float) -> torch.Tensor:
            """``(B, T)`` with ``v`` at the answer positions (aligned with ``labels``), ``fill`` elsewhere."""
            out = torch.full(keep.shape, fill, dtype=v.dtype, device=v.device).masked_scatter(keep, v)
            return F.pad(out, (1, 0), value=fill)

        mask = lab != IGNORE
        lp = at_answers(full.gather(-1, lab[:, 1:][keep][:, None])[:, 0], 0.0)
        pred, mu, sigma = at_answers(flat.argmax(-1), -1), at_answers(mu_f, 0.0), at_answers(sigma_f, 0.0)
        lp_n, m_n = lp.cpu().double().numpy(), mask.cpu().numpy()
        pred_n, tgt_n = pred.cpu().numpy(), lab.clamp_min(0).cpu().numpy()
        m_body = drop_final_eos(m_n, tgt_n, tok.eos_token_id)
        answers = [_decode(tok, row[mrow]) for row, mrow in zip(tgt_n, m_n)]
        out["answers"] += answers
        out["mean_logprob"].append(lmm.loss_score(lp_n, m_n))
        out["sum_logprob"].append((lp_n * m_n).sum(1))
        out["length"].append(m_n.sum(1))
        out["token_acc"].append(lmm.exact_memorization(pred_n, tgt_n, m_body))
        out["exact"].append((lmm.exact_memorization(pred_n, tgt_n, m_n) == 1.0).astype(np.float64))
        out["extraction"].append(lmm.extraction_strength(pred_n, tgt_n, m_body))
        out["mia_zlib"].append(lmm.zlib_score(lp_n, m_n, answers))
        out["mia_min_k"].append(lmm.min_k_score(lp_n, m_body, k=MIN_K))
        out["mia_min_k_pp"].append(
            lmm.min_k_plus_plus_score(lp_n, mu.cpu().double().numpy(), sigma.cpu().double().numpy(), m_body, k=MIN_K)
        )
    res = {k: (np.asarray(v, dtype=object) if k == "answers" else np.concatenate(v)) for k, v in out.items()}
    res["length"] = res["length"].astype(np.int64)
    return res


@torch.no_grad()
def decode_batch(
    model: nn.Module,
    prompts: Sequence[torch.Tensor],
    pad_id: int,
    eos_id: int,
    max_new_tokens: int,
    device,
    sample: bool = False,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> list[list[int]]:
    """Continue each prompt (1-D token ids) greedily, or by sampling at ``temperature``.

    Prompts are left-padded into one batch (position ids count real tokens only) and
    decoded with the KV cache for at most ``max_new_tokens`` tokens; a row stops at its
    first eos, which is kept in the returned ids (so its likelihood can be scored).
    Sampling draws from ``generator`` only, so it is reproducible without touching the
    global RNG. Greedy decoding drops a row from the batch (and its KV cache) once it has
    emitted eos, so the steps after cost only the rows still running; the tokens are the
    same. Sampling keeps every row to the end, so each step draws the same random numbers
    whichever rows have finished.
    """
    b, plen = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((b, plen), pad_id, dtype=torch.long)
    am = torch.zeros((b, plen), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, plen - len(p) :] = p
        am[i, plen - len(p) :] = 1
    ids, am = ids.to(device), am.to(device)
    pos = (am.cumsum(1) - 1).clamp_min(0)
    toks = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)  # the batch rows still decoding, in cache order
    done = torch.zeros(b, dtype=torch.bool, device=device)
    past, cur, cur_pos, n_steps = None, ids, pos, 0
    for step in range(max_new_tokens):
        out = model(input_ids=cur, attention_mask=am, position_ids=cur_pos, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].float()
        if sample:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        toks[rows, step] = nxt
        n_steps = step + 1
        done |= nxt == eos_id
        n_done = int(done.sum())  # the step's one device sync
        if n_done == len(rows):
            break
        am = torch.cat([am, torch.ones((len(rows), 1), dtype=am.dtype, device=device)], 1)
        cur, cur_pos = nxt[:, None], cur_pos[:, -1:] + 1
        if n_done and not sample and hasattr(past, "batch_select_indices"):
            live = (~done).nonzero()[:, 0]
            past.batch_select_indices(live)
            rows, done, am, cur, cur_pos = rows[live], done[live], am[live], cur[live], cur_pos[live]
    toks = toks[:, :n_steps].cpu().tolist()
    res = []
    for row in toks:
        k = row.index(eos_id) + 1 if eos_id in row else len(row)
        res.append(row[:k])
    return res


def _prompts(data, spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [data.inputs[i, :s] for i, (s, _) in enumerate(spans)]


@torch.no_grad()
def generate_answers(
    model: nn.Module, data, tok, device, batch_size: int = 32, max_new_tokens: int | None = None
) -> list[str]:
    """Greedy answers to the questions of ``data`` (prompt = tokens before the first answer
    token), decoded with ``tok``; each stops at its first eos or after ``max_new_tokens``
    (default :data:`GEN_MAX_NEW_TOKENS`, OpenUnlearning's 200).

    Why the limit matters: ROUGE-L recall ``LCS(gen, ref) / |ref|`` can only grow as the
    generation is extended (an LCS of a prefix is a common subsequence of the whole), so a
    shorter cap can only under-count; a cap changes nothing for a row that emits eos before
    it, since generation stops there in both cases."""
    spans = _answer_spans(data)
    limit = max_new_tokens or GEN_MAX_NEW_TOKENS
    prompts = _prompts(data, spans)
    out = []
    for start in range(0, len(prompts), batch_size):
        out += decode_batch(
            model, prompts[start : start + batch_size], tok.pad_token_id, tok.eos_token_id, limit, device
        )
    return [_decode(tok, ids) for ids in out]


def score_lm_set(model: nn.Module, data, adapter, generate: bool = True, batch_size: int = 32) -> LMScores:
    """:class:`LMScores` of ``model`` on one :class:`TokenExampleSet` (eval mode, no grad)."""
    tok = _tokenizer(adapter)
    was = model.training
    model.eval()
    try:
        tf = _teacher_forced(model, data, adapter, tok, batch_size)
        gens = rouge = None
        if generate:
            gens = np.asarray(generate_answers(model, data, tok, adapter.device, batch_size), dtype=object)
            rouge = np.array([lmm.rouge_l_recall(g, a) for g, a in zip(gens, tf["answers"])])
    finally:
        model.train(was)
    return LMScores(np.asarray(data.example_ids).astype(str).astype(object), generations=gens, rouge=rouge, **tf)


def lm_set_names(task) -> list[str]:
    """What :func:`score_lm_splits` scores by default: forget, retain, holdout, every eval set."""
    return ["forget", "retain", "holdout", *[n for n in task.eval_sets if n not in ("forget", "retain", "holdout")]]


def score_lm_splits(
    model: nn.Module, task, names: Sequence[str] | None = None, generate: bool = True, batch_size: int = 32
) -> dict[str, LMScores]:
    """:class:`LMScores` of ``model`` on each named set of a causal-LM ``task``.

    ``names`` default to :func:`lm_set_names`. ``retain`` is the ``retain_eval`` eval set
    when the task has one (the same object under both names; scored once). Greedy
    generation (for ROUGE) runs on every set without ``@`` in its name when ``generate``.
    """
    if getattr(task, "modality", None) != "causal_lm":
        raise ConfigError("score_lm_splits needs a causal-LM task (make_lm_task); use score_splits for classifiers")
    names = list(names) if names is not None else lm_set_names(task)
    out: dict[str, LMScores] = {}

    def data_of(name: str):
        if name == "retain" and "retain_eval" in task.eval_sets:
            return "retain_eval", task.eval_sets["retain_eval"]
        if name in ("forget", "retain", "holdout"):
            return name, getattr(task, name)
        if name in task.eval_sets:
            return name, task.eval_sets[name]
        raise ConfigError(f"the task has no set {name!r}; it has forget, retain, holdout, {', '.join(task.eval_sets)}")

    for name in names:
        key, data = data_of(name)
        if key not in out:
            out[key] = score_lm_set(model, data, task.adapter, generate and "@" not in key, batch_size)
        out[name] = out[key]
    return out


def score_model(model: nn.Module, task) -> dict[str, LMScores]:
    """Scores of ``model`` on the forget, retain, holdout and evaluation sets (what the
    modality registry's ``score_model`` returns for a causal-LM task)."""
    return score_lm_splits(model, task)


def mean_finite(x) -> float:
    """Mean of the non-NaN entries (NaN when there is none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else NAN
