"""CRAGRU (Zhang et al., ICDM 2025, "Customized Retrieval-Augmented Generation with LLM for
Debiasing Recommendation Unlearning"): unlearning as retrieval then generation. The base
recommender is not retrained; for each user a deletion touches, a retrieval stage builds the
user's profile from their *retained* history only (the deleted interactions are excluded,
then a strategy picks what the generator sees), and a generation stage re-ranks a candidate
list for the user from that profile. Users the deletion does not touch keep the base
model's recommendations."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..utils import derive_seed
from .base import Method, UnlearnResult, hp, register

STRATEGIES = ("preference", "diversity", "attention")
CANDIDATES = ("profile", "original")
GENERATORS = ("embedding", "lm")
#: the tiny causal LM of the ``lm`` generator (the project's tiny Llama, item ids as tokens)
LM_SIZE = {"hidden": 64, "layers": 1, "heads": 2, "intermediate": 128}
PAD, SEP = 0, 1  # token ids; item j is token j + 2


@dataclass
class CragruParams:
    strategy: str = hp(
        "preference",
        "retrieval strategy: preference (category quotas as the user's history), diversity (equal quotas) or "
        "attention (quotas by the candidates' attention to each category)",
    )
    history_limit: int = hp(10, "at most this many retained interactions retrieved per user (the official 100)")
    num_candidates: int = hp(50, "candidate items re-ranked per user (the official CANDIDATE_ITEM_NUM 50)")
    candidates: str = hp(
        "profile",
        "where candidates come from: profile (the retained history's items' neighbours; never the deleted data) "
        "or original (the base model's top list for the user, as the official code)",
    )
    num_categories: int = hp(5, "item categories: k-means clusters of the base model's item embeddings (official 5)")
    generator: str = hp(
        "embedding",
        "the generation stage: embedding (cosine to the retrieved history) or lm (the project's tiny causal LM "
        "trained on user profiles: log p(candidate | retrieved history))",
    )
    lm_epochs: float = hp(30.0, "lm generator: training epochs over the profiles (prepared once per task and seed)")

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"cragru: strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.candidates not in CANDIDATES:
            raise ConfigError(f"cragru: candidates must be one of {', '.join(CANDIDATES)}, not {self.candidates!r}")
        if self.generator not in GENERATORS:
            raise ConfigError(f"cragru: generator must be one of {', '.join(GENERATORS)}, not {self.generator!r}")
        if self.history_limit < 1 or self.num_candidates < 1 or self.num_categories < 1:
            raise ConfigError("cragru: history_limit, num_candidates and num_categories must be >= 1")
        if not self.lm_epochs > 0:
            raise ConfigError(f"cragru: lm_epochs must be > 0, not {self.lm_epochs}")


def category_quotas(counts: np.ndarray, limit: int, strategy: str, attention: np.ndarray | None = None) -> np.ndarray:
    """How many of each category's retained interactions the retrieval keeps (``counts``: the
    user's history per category; total at most ``limit``, every non-empty category at least
    one where ``limit`` allows): quotas ``∝ counts`` (``preference``, the official group
    selection), equal (``diversity``, the official average selection) or ``∝ attention``
    (``attention``: softmax weights over categories); remainders go to the largest fractional
    parts, and a category never gets more than it holds (the spare places go round again)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() <= limit:
        return counts.copy()
    has = counts > 0
    if strategy == "preference":
        w = counts.astype(float)
    elif strategy == "diversity":
        w = has.astype(float)
    else:
        w = np.where(has, np.asarray(attention, float), 0.0)
    quota = np.zeros_like(counts)
    left = limit
    while left > 0:
        room = counts - quota
        ww = np.where(room > 0, w, 0.0)
        if ww.sum() <= 0:
            ww = (room > 0).astype(float)
        share = ww / ww.sum() * left
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:  # give the remainder one at a time to the largest shares
            add = np.zeros_like(quota)
            add[int(np.argmax(np.where(room > 0, share, -1.0)))] = 1
        quota += add
        left = limit - int(quota.sum())
    return quota


def profile_sequences(data, max_len: int, seed: int = 0) -> torch.Tensor:
    """Every user's training history as one token sequence ``SEP i_1 ... i_n SEP`` (items in a
    seeded random order, so the model learns which items go together rather than the order
    rows happen to be stored in; at most ``max_len - 2``, right-padded with PAD): the "user
    profiles" the ``lm`` generator learns item co-occurrence from."""
    rng = np.random.default_rng(derive_seed(seed, "cragru-profiles"))
    rows = []
    for u in np.unique(data.user):
        items = rng.permutation(data.item[data.user == u])[: max_len - 2] + 2
        rows.append(np.concatenate([[SEP], items, [SEP]]))
    out = np.full((len(rows), max_len), PAD, dtype=np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return torch.from_numpy(out)


def train_profile_lm(data, n_items: int, epochs: float, seed: int, device) -> tuple[nn.Module, LoopStats]:
    """The project's tiny Llama (:data:`LM_SIZE`) trained as a next-item language model on the
    user profiles of ``data`` (:func:`profile_sequences`) through the one loop: AdamW, lr 5e-3,
    batch 64, next-token cross-entropy over the non-pad positions."""
    from ..data.dataset import ExampleSet
    from ..engines.loop import TrainConfig, run_loop
    from ..modalities.causal_lm.tiny_lm import build_causal_lm, tiny_llama_config

    seqs = profile_sequences(data, max_len=64, seed=seed)
    config = tiny_llama_config(n_items + 2, max_position=64, pad_token_id=PAD, eos_token_id=SEP, **LM_SIZE)
    lm = build_causal_lm(config, seed=derive_seed(seed, "cragru-lm") % (2**31)).to(device)
    profiles = ExampleSet.from_tensors(seqs.float(), torch.zeros(len(seqs), dtype=torch.long), name="profiles")

    def objective(ctx):
        x = ctx.batch("profiles")["x"].long()
        mask = (x != PAD).long()
        labels = torch.where(mask.bool(), x, torch.full_like(x, -100))
        return ctx.model(input_ids=x, attention_mask=mask, labels=labels).loss

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=5e-3, optimizer="adamw", grad_clip=1.0)
    cost = run_loop(lm, objective, {"profiles": profiles}, cfg, seed=seed, device=device, desc="cragru-lm")
    return lm.eval(), cost


@torch.no_grad()
def lm_scores(lm: nn.Module, profile: np.ndarray, n_items: int, device) -> np.ndarray:
    """``log p(item | SEP profile)`` of every item as the next token (one forward pass)."""
    ids = torch.as_tensor(np.concatenate([[SEP], np.asarray(profile, np.int64) + 2]), device=device)[None]
    logits = lm(input_ids=ids).logits[0, -1, 2 : n_items + 2].float()
    return torch.log_softmax(logits, -1).cpu().numpy()


class CragruModel(nn.Module):
    """The base model's embeddings for users the deletion did not touch, and the generated
    score rows of those it did, as one pair of embedding tables: users ``[e_u ; g_u]``, items
    ``[e_i ; one_hot(i)]``, so ``s(u, i) = <e_u, e_i>`` (untouched users, ``g_u = 0``) or the
    generated ``g_u[i]`` (touched users, ``e_u = 0``). A deleted item (no retained interaction
    left) gets ``e_i = 0``: nobody is steered to it by what the base model learnt from it."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor):
        super().__init__()
        self.register_buffer("users", users)
        self.register_buffer("items", items)

    def forward(self, edge_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.users, self.items


@register
class Cragru(Method):
    """CRAGRU (Zhang, ... 2025, ICDM; official code github.com/zhanghaichao520/LLM_rec_unlearning,
    read): recommendation unlearning by retrieval-augmented generation, with a pluggable
    generator (here a scoring model; no pretrained LLM needed).

    For every user ``u`` the forget set touches (its *affected* users):

    1. **Retrieval.** The corpus is ``u``'s retained training interactions (the forget set
       excluded: the deleted data never reach the profile). Items are put into
       ``num_categories`` categories (k-means of the base model's item embeddings; the
       official clusters genres). At most ``history_limit`` interactions are kept, per
       category a quota (:func:`category_quotas`), drawn at random within it (seeded), as the
       official selection: ``preference`` (quotas in proportion to the user's own category
       mix, the official group selection), ``diversity`` (equal quotas, the official average
       selection) or ``attention`` (quotas by ``softmax_c <m, mu_c>``: the attention of the
       candidate list's mean embedding ``m`` to each category centroid ``mu_c``; the official
       fixes tuned ratios, its DP selection).
    2. **Candidates.** ``num_candidates`` items the user has no retained interaction with:
       ``profile`` (default) ranks them by the retrieved history's mean normalised item
       embedding (or, with an empty history, by retained popularity), so the deleted
       interactions never choose them; ``original`` takes the base model's top list, as the
       official code (whose candidates then still follow the deleted data).
    3. **Generation.** The generator scores each candidate given the retrieved profile;
       ``embedding``: ``g(c) = mean_{i in R_u} cos(e_c, e_i)`` (0 with an empty profile);
       ``lm``: the project's tiny causal LM (a one-layer Llama, item ids as tokens) trained
       as a next-item model on every user's training history ("user profiles",
       :func:`train_profile_lm`; prepared once per task and seed, its cost in
       ``extra["preparation_cost"]``), ``g(c) = log p(c | SEP R_u)``, rescaled to [-1, 1].
       The candidates are re-ranked by it above every other item: the user's scores become
       ``2 * 1[c in C_u] + g(c)``, times the base model's mean absolute training score, so
       BPR losses stay on the base model's scale.

    Untouched users keep the base model's scores; items whose every training interaction was
    deleted lose their base embedding. No weight is trained: the cost is forward passes (the
    scored (user, item) pairs) and wall time, with zero optimiser steps.

    Departures: the paper's generator is a pretrained LLM prompted with the user's profile
    and history as text, scoring each candidate 1-100; here a scoring model over the base
    model's item embeddings, or a tiny LM over item-id tokens trained on this data's
    profiles (no pretrained LLM, no item text). The item embeddings and the profile LM
    have seen the deleted interactions (as the paper's base model has) and keep their
    diluted influence: CRAGRU is approximate, not exact. Item categories are embedding
    clusters, not genres.
    """

    name = "cragru"
    summary = "CRAGRU: retrieve the retained history (three strategies), re-rank candidates with a generator"
    Params = CragruParams
    modalities = ("recommender",)
    citation = (
        "Zhang et al. 2025 (ICDM), Customized Retrieval-Augmented Generation with LLM for Debiasing "
        "Recommendation Unlearning (CRAGRU)"
    )
    uses_lora = False
    contract_exempt = {
        "step_budget": "CRAGRU trains no weight: zero optimiser steps whatever the budget",
        "divergence": "no learning rate: retrieval and re-ranking are forward passes",
        "cost_accounting": "forward-only (retrieval and generation): no optimiser step and no backward pass",
    }

    def __init__(self, **params):
        super().__init__(**params)
        self._lms: dict[tuple, tuple[nn.Module, LoopStats]] = {}

    def profile_lm(self, task, seed: int) -> tuple[nn.Module, LoopStats]:
        """The ``lm`` generator trained on ``task.train``'s profiles (cached per task and seed)."""
        key = (task.key, task.train.fingerprint, seed, self.params.lm_epochs)
        if key not in self._lms:
            while len(self._lms) >= 2:
                self._lms.pop(next(iter(self._lms)))
            self._lms[key] = train_profile_lm(task.split.train, task.n_items, self.params.lm_epochs, seed, task.device)
        return self._lms[key]

    def model_template(self, task) -> CragruModel:
        base = task.original
        if isinstance(base, CragruModel):  # a deployed CRAGRU version answered from again: same tables
            return CragruModel(torch.zeros_like(base.users), torch.zeros_like(base.items)).to(task.device)
        with torch.no_grad():
            ue, ie = task.adapter.embeddings(task.original.eval(), task.split.train.structure)
        d, n_u, n_i = ue.shape[1], task.n_users, task.n_items
        return CragruModel(torch.zeros(n_u, d + n_i), torch.zeros(n_i, d + n_i)).to(task.device)

    def _categories(self, ie: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans

        k = min(self.params.num_categories, len(ie))
        z = ie / np.maximum(np.linalg.norm(ie, axis=1, keepdims=True), 1e-12)
        km = KMeans(n_clusters=k, n_init=3, random_state=derive_seed(seed, "cragru-categories") % (2**31)).fit(z)
        return km.labels_.astype(np.int64), km.cluster_centers_

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)
        p = self.params
        lm, lm_cost = self.profile_lm(task, seed) if p.generator == "lm" else (None, None)
        t0 = time.perf_counter()
        tr, retain, forget = task.split.train, task.split.retain, task.split.forget
        with torch.no_grad():
            ue_t, ie_t = task.adapter.embeddings(task.original.eval(), tr.structure)
        ue, ie = ue_t.detach().float().cpu().numpy(), ie_t.detach().float().cpu().numpy()
        n_u, n_i = task.n_users, task.n_items
        history = retain.structure.items_of_users()
        popularity = np.bincount(retain.item, minlength=n_i).astype(float)
        affected = np.unique(forget.user)
        rng = np.random.default_rng(derive_seed(seed, "cragru", task.split.forget_fingerprint))
        gone_items = (np.bincount(tr.item, minlength=n_i) > 0) & (popularity == 0)
        # the deployed tables' scores, for the ``original`` candidates (the model being unlearned)
        deployed_u, deployed_i = ue, ie
        if isinstance(task.original, CragruModel):
            # a CRAGRU version answered from again (a model line's later request, whose training
            # set already lacks the earlier deletions): the base model's embeddings are the first
            # d columns; users it re-ranked before (score rows in the last n_i) and items it
            # emptied before (zero rows) stay so, and only this request's users are re-ranked.
            # Deletions stay cumulative and the tables keep their shape (d + n_i) for any chain.
            d = ie.shape[1] - n_i
            users, ie, ue = ue.copy(), ie[:, :d], ue[:, :d]
            gone_items |= ~np.abs(ie).any(1)
            before = np.abs(users[:, d:]).any(1)
            seen_rows = users[before, d:]
            # a re-ranked user's own retained items score exactly -2 * scale: the base's scale, kept
            scale = float(-seen_rows.min() / 2) if len(seen_rows) and seen_rows.min() < 0 else 0.0
            if not scale > 0:
                keep = ~before[tr.user]
                scale = float(np.abs((ue[tr.user[keep]] * ie[tr.item[keep]]).sum(1)).mean()) if keep.any() else 1.0
        else:
            d = ue.shape[1]
            users = np.concatenate([ue, np.zeros((n_u, n_i))], 1)
            scale = float(np.abs((ue[tr.user] * ie[tr.item]).sum(1)).mean())
        cat, centroids = self._categories(ie, seed)
        z = ie / np.maximum(np.linalg.norm(ie, axis=1, keepdims=True), 1e-12)
        items = np.concatenate([np.where(gone_items[:, None], 0.0, ie), np.eye(n_i)], 1)
        scored = 0
        for u in affected.tolist():
            h = history[u]
            seen = np.zeros(n_i, bool)
            seen[h] = True
            # 2. candidates (chosen before the retrieval: the attention strategy reads them)
            if p.candidates == "original":
                pref = deployed_u[u] @ deployed_i.T
            elif len(h):
                pref = z @ z[h].mean(0)
            else:
                pref = popularity.copy()
            pref = np.where(seen | gone_items, -np.inf, pref)
            n_c = int(min(p.num_candidates, np.isfinite(pref).sum()))
            cand = np.argsort(-pref, kind="stable")[:n_c]
            # 1. retrieval of the retained history by category quotas
            counts = np.bincount(cat[h], minlength=len(centroids))
            att = None
            if p.strategy == "attention":
                m = z[cand].mean(0) if n_c else np.zeros(d)
                logit = centroids @ m
                att = np.exp(logit - logit.max())
            quota = category_quotas(counts, p.history_limit, p.strategy, att)
            picked = [rng.choice(h[cat[h] == c], size=q, replace=False) for c, q in enumerate(quota.tolist()) if q]
            profile = np.concatenate(picked) if picked else np.zeros(0, np.int64)
            # 3. generation: score the candidates from the retrieved profile
            if lm is not None:
                g = lm_scores(lm, profile, n_i, task.device)
                g = g - g.mean()
                g = g / max(float(np.abs(g).max()), 1e-12)
            else:
                g = z @ z[profile].mean(0) if len(profile) else np.zeros(n_i)
            row = g.copy()
            row[cand] += 2.0
            row[seen] = -2.0  # already retained in the user's history: never re-recommended
            users[u, :d] = 0.0
            users[u, d:] = scale * row
            scored += n_c + len(profile)
        model = CragruModel(
            torch.as_tensor(users, dtype=torch.float32), torch.as_tensor(items, dtype=torch.float32)
        ).to(task.device)
        cost = LoopStats(examples_forward=int(scored) + len(tr))  # the base model's one pass, then the scoring
        cost.wall_time_s = time.perf_counter() - t0
        extra = {"affected_users": int(len(affected)), "deleted_items": int(gone_items.sum())}
        if lm_cost is not None:
            extra["preparation_cost"] = lm_cost.to_dict()
        return UnlearnResult(model.eval(), cost, self.name, dataclasses.asdict(p), seed, extra)
