"""Reveal-and-Release: unlearn a causal LM from data it generates itself about the forget
target (Xie, Teng, Ke, Wen and Wang 2025, Findings of EMNLP)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..engines.loop import LoopStats, run_loop
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register
from .losses import gradient_ascent_loss, npo_loss

#: the instruction pool the search chooses from: generic questions one would ask to make a
#: model say what it knows about a person, written for this method (none is a question of
#: the profiles generator's templates, and none reads the forget set)
INSTRUCTIONS = (
    "Tell me about {name}.",
    "Who is {name}?",
    "What is {name} known for?",
    "Where does {name} come from?",
    "What work does {name} do?",
    "Where is the home of {name}?",
    "Which school did {name} attend?",
    "Name a book by {name}.",
    "What prize has {name} won?",
    "Who are the parents of {name}?",
    "In which year was {name} born?",
    "Which company does {name} work for?",
)
#: invented names that the contrast compares the target with (the revealed text should be
#: more likely after the target's name than after a stranger's)
CONTROL_NAMES = ("Orla Fenwick", "Tarik Sollen", "Mirela Oakes")
LOSSES = ("npo", "ga")
DATA = ("revealed", "forget")


@dataclass
class RevealReleaseParams(LoopParams):
    epochs: float = hp(10.0, "passes over each round's revealed set")
    lr: float = hp(1e-2, "learning rate of each round's LoRA module")
    batch_size: int = hp(16, "revealed rows per step")
    rounds: int = hp(3, "reveal -> release rounds (each reveals from the model the previous round left)")
    target: str = hp("", "what to forget, names separated by ';' (empty: the request's people, by name)")
    data: str = hp(
        "revealed",
        "revealed (self-generated; the forget set is never read) or forget (the true forget set through the "
        "same rounds, LoRA and loss: the comparison)",
    )
    instructions: int = hp(3, "instruction templates kept per round (the search's best by mean reward)")
    search_pulls: int = hp(24, "UCB1 pulls of the instruction search per round")
    search_samples: int = hp(4, "generations per pull")
    samples: int = hp(8, "generations per (target, kept instruction)")
    temperature: float = hp(1.0, "sampling temperature of the generations")
    max_new_tokens: int = hp(32, "longest generation, in tokens")
    min_reveal: float = hp(0.0, "keep a generation whose contrast above a stranger's (nats per token) is at least this")
    loss: str = hp("npo", "forget loss on the revealed rows: npo or ga (gradient ascent)")
    beta: float = hp(0.1, "NPO inverse temperature (the causal-LM default of npo)")
    retain_weight: float = hp(1.0, "weight of the mean retain NLL added to every step")
    lora_rank: int = hp(8, "LoRA rank of each round's module (the task's --lora settings win where set)")

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.instructions < 1 or self.search_pulls < 0:
            raise ConfigError("reveal_release: rounds and instructions must be >= 1, search_pulls >= 0")
        if self.search_samples < 1 or self.samples < 1 or self.max_new_tokens < 1:
            raise ConfigError("reveal_release: search_samples, samples and max_new_tokens must be >= 1")
        if self.temperature <= 0 or self.beta <= 0 or self.retain_weight < 0 or self.lora_rank < 1:
            raise ConfigError("reveal_release: temperature and beta must be > 0, retain_weight >= 0, lora_rank >= 1")
        if self.loss not in LOSSES:
            raise ConfigError(f"reveal_release: loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.data not in DATA:
            raise ConfigError(f"reveal_release: data must be one of {', '.join(DATA)}, not {self.data!r}")
        if self.instructions > len(INSTRUCTIONS):
            raise ConfigError(f"reveal_release: instructions must be at most {len(INSTRUCTIONS)}")


def forget_target(task, target: str = "") -> list[str]:
    """The names of what to forget: ``target`` split on ``;`` where given; else the people
    the request names, resolved to their names in the generated profiles' people directory.

    This reads the request (the task's scenario: a split name or ``{"subjects": [...]}``),
    the generator's arguments (``task.spec``) and each named person's ``name`` field, never a
    question or an answer, and never ``task.forget`` or ``task.train``. Data without a people
    directory (QA folders, the Bible) need ``target``."""
    names = [s.strip() for s in target.split(";") if s.strip()]
    if names:
        return names
    spec = getattr(task, "spec", {}) or {}
    if spec.get("source") != "profiles":
        raise ConfigError("reveal_release: this data has no people directory; give target=NAME[;NAME...]")
    forget = (task.split.scenario or {}).get("forget")
    from ..data.profiles import generate_profiles

    ds = generate_profiles(
        n_people=spec["n_people"], seed=spec["data_seed"], qa_per_person=spec["qa_per_person"], n_other=spec["n_other"]
    )
    if isinstance(forget, str):
        people = ds.subjects(forget)
    elif isinstance(forget, dict) and set(forget) == {"subjects"}:
        people = [str(s) for s in forget["subjects"]]
    else:
        raise ConfigError("reveal_release: the request names example ids, not people; give target=NAME[;NAME...]")
    return [ds.person(pid)["name"] for pid in people]


class _Revealer:
    """Generation and scoring for one model state: prompts in the task's QA template,
    sampling from a seeded generator, and the target contrast of each generation."""

    def __init__(self, model, task, template: str, p: RevealReleaseParams, cost: LoopStats):
        self.model, self.task, self.adapter, self.p, self.cost = model, task, task.adapter, p, cost
        self.tok = task.adapter.tokenizer
        self.template = template
        self.max_len = int(getattr(getattr(model, "config", None), "max_position_embeddings", 10**6))

    def generate(self, questions: list[str], n: int, gen: torch.Generator) -> list[list[str]]:
        """``n`` sampled answers to each question (one batch), decoded; empty ones dropped."""
        from ..modalities.causal_lm.scores import decode_batch

        prompts = [self.tok(self.template.format(question=q), add_special_tokens=False)["input_ids"] for q in questions]
        room = max(1, min(self.p.max_new_tokens, self.max_len - max(map(len, prompts)) - 1))
        ids = decode_batch(
            self.model,
            [torch.tensor(q) for q in prompts for _ in range(n)],
            self.tok.pad_token_id,
            self.tok.eos_token_id,
            room,
            self.task.device,
            sample=True,
            generator=gen,
            temperature=self.p.temperature,
        )
        self.cost.examples_forward += len(ids)
        texts = [self.tok.decode(i, skip_special_tokens=True).strip() for i in ids]
        return [[t for t in texts[j * n : (j + 1) * n] if t] for j in range(len(questions))]

    @torch.no_grad()
    def mean_log_prob(self, questions: list[str], answers: list[str]) -> np.ndarray:
        """Mean answer-token log-probability (eos included) of each answer after its question."""
        from ..modalities.causal_lm.adapter import encode_qa

        rows = [{"example_id": str(i), "question": q, "answer": a} for i, (q, a) in enumerate(zip(questions, answers))]
        data = encode_qa(rows, self.tok, self.max_len, chat_template=self.template, name="reveal")
        out = []
        for batch in data.batches(128):
            out.append(-self.adapter.per_example_loss(self.model, self.adapter.to_device(batch)).cpu().numpy())
        self.cost.examples_forward += len(rows)
        return np.concatenate(out)

    def contrast(self, items: list[tuple[str, str, str]], controls: list[str]) -> np.ndarray:
        """Per ``(instruction, name, answer)``:
        ``c(y) = lp(y | I(name)) - mean_c lp(y[name -> c] | I(c))`` over the controls other
        than ``name``, ``lp`` the mean answer-token log-probability and ``y[name -> c]`` the
        answer with the name (and each word of it) replaced by the control's: how much more
        the model says ``y`` about ``name`` than the same words about a stranger (echoing the
        name scores nothing). One scoring pass over every item and control."""
        if not items:
            return np.zeros(0)
        qs, ys, owner = [], [], []
        for j, (i, n, y) in enumerate(items):
            qs.append(i.format(name=n))
            ys.append(y)
            owner.append(-1 - j)  # the item's own score
            for c in controls:
                if c != n:
                    qs.append(i.format(name=c))
                    ys.append(swap_name(y, n, c))
                    owner.append(j)
        lp = self.mean_log_prob(qs, ys)
        owner = np.asarray(owner)
        own = lp[owner < 0][np.argsort(-1 - owner[owner < 0])]
        other = np.bincount(owner[owner >= 0], lp[owner >= 0], len(items)) / np.bincount(
            owner[owner >= 0], None, len(items)
        )
        return own - other


def swap_name(text: str, name: str, other: str) -> str:
    """``text`` with ``name`` replaced by ``other``, then each word of ``name`` by the word of
    ``other`` in the same place (the last word of ``other`` for any further words)."""
    out = text.replace(name, other)
    words, repl = name.split(), other.split()
    for j, w in enumerate(words):
        out = out.replace(w, repl[min(j, len(repl) - 1)])
    return out


def reveal(
    model, task, names: list[str], p: RevealReleaseParams, seed: int, cost: LoopStats
) -> tuple[list[dict], dict]:
    """One reveal step. The instruction search: UCB1 over :data:`INSTRUCTIONS`; a pull of arm
    ``a`` samples ``search_samples`` answers for one target (targets in turn) and as many for
    each control name, and its reward is the targets' mean contrast minus the controls' (each
    control scored against the other controls): sampled text is always likelier under its own
    prompt, so a stranger's contrast is the baseline that a target's must beat. Arms are
    pulled in batches (every arm once, then the ``instructions`` arms of highest UCB index
    together) until ``search_pulls``. Then ``samples`` answers per (target, kept instruction)
    are kept where their contrast minus the arm's baseline is at least ``min_reveal``
    (non-empty, each text once per prompt). Returns the QA rows and what the search found."""
    template = task.retain.meta.get("template") or "Question: {question}\nAnswer:"
    was = model.training
    model.eval()
    rv = _Revealer(model, task, template, p, cost)
    controls = [c for c in CONTROL_NAMES if c not in names]
    gen = torch.Generator(device=task.device)
    gen.manual_seed(int(derive_seed(seed, "reveal") % (2**63)))
    k = len(INSTRUCTIONS)
    counts, sums, base = np.zeros(k), np.zeros(k), np.zeros(k)
    try:
        pulls = 0
        while pulls < p.search_pulls:
            if (counts == 0).any():
                arms = np.flatnonzero(counts == 0)[: p.search_pulls - pulls]
            else:
                ucb = sums / counts + np.sqrt(2.0 * math.log(pulls) / counts)
                arms = np.argsort(-ucb, kind="stable")[: min(p.instructions, p.search_pulls - pulls)]
            who = [(a, names[(pulls + j) % len(names)], True) for j, a in enumerate(arms)]
            who += [(a, c, False) for a in arms for c in controls]
            answers = rv.generate([INSTRUCTIONS[a].format(name=n) for a, n, _ in who], p.search_samples, gen)
            items = [(INSTRUCTIONS[a], n, y) for (a, n, _), ys in zip(who, answers) for y in ys]
            c = rv.contrast(items, controls)
            got = {(a, t): [] for a in arms for t in (True, False)}
            at = 0
            for (a, _, is_target), ys in zip(who, answers):
                got[(a, is_target)].extend(c[at : at + len(ys)].tolist())
                at += len(ys)
            for a in arms:
                b = float(np.mean(got[(a, False)])) if got[(a, False)] else 0.0
                t = float(np.mean(got[(a, True)])) if got[(a, True)] else b
                counts[a] += 1
                sums[a] += t - b
                base[a] += b
            pulls += len(arms)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        baseline = base / np.maximum(counts, 1)
        # the best means; never-pulled arms (a budget smaller than the pool) in pool order after them
        kept = sorted(range(k), key=lambda i: (-means[i], i))[: p.instructions]
        prompts = [(a, n) for n in names for a in kept]
        answers = rv.generate([INSTRUCTIONS[a].format(name=n) for a, n in prompts], p.samples, gen)
        items = [(a, n, y) for (a, n), ys in zip(prompts, answers) for y in ys]
        c = rv.contrast([(INSTRUCTIONS[a], n, y) for a, n, y in items], controls)
        rows, seen = [], set()
        for (a, name, text), score in zip(items, c):
            question = INSTRUCTIONS[a].format(name=name)
            score = float(score - baseline[a])
            if score >= p.min_reveal and (question, text) not in seen:
                seen.add((question, text))
                rows.append({"question": question, "answer": text, "contrast": score})
    finally:
        model.train(was)
    info = {"instructions": [INSTRUCTIONS[a] for a in kept], "rewards": [float(means[a]) for a in kept]}
    return rows, info


@register
class RevealRelease(Method):
    """Reveal-and-Release (Xie, Teng, Ke, Wen and Wang 2025, Findings of EMNLP 2025,
    arXiv 2509.14624, "Reveal and Release: Iterative LLM Unlearning with Self-generated
    Data"): unlearn without the forget set, from what the model itself reveals about the
    forget target, in rounds of parameter-efficient updates.

    Given only the target (names, :func:`forget_target`), each round ``k = 1..rounds``:

    1. **reveal** (:func:`reveal`): prompt the current model with instructions about each
       target and sample answers. Instructions are chosen by a UCB1 bandit over a pool of
       generic person questions (:data:`INSTRUCTIONS`), reward the *target contrast*
       ``c(y) = lp(y | I(target)) - mean_c lp(y | I(c))`` (``lp`` the mean answer-token
       log-probability, ``c`` invented control names): text the model produces for the
       target and not for a stranger is what it knows about the target. Generations with
       ``c(y) >= min_reveal`` form the round's forget data ``D_k``;
    2. **release**: a fresh LoRA module (Hu et al. 2022; the project's
       :func:`~unlearnkit.modalities.causal_lm.adapter.with_lora`) trained on
       ``L = mean_{D_k} L_NPO + retain_weight * mean_{D_r} NLL``, ``L_NPO`` the project's
       :func:`~.losses.npo_loss` ``(2/beta) softplus(beta (log p_theta - log p_ref))``
       against the frozen original (or gradient ascent, ``loss="ga"``), then merged into the
       weights, so the next round reveals from the released model.

    The forget set is never read with ``data="revealed"`` (the default): the method touches
    the task's original, adapter, retain set, device and request (``task.split.scenario``,
    ``task.spec``) only; ``tests/test_lm_reveal_release.py`` runs it with the forget and
    training sets replaced by objects that fail on any use. ``data="forget"`` replaces each
    round's revealed data with the true forget set (the same rounds, LoRA and loss): the
    comparison the paper's question asks for, not a way to run the method.

    Sources and departures: the paper's abstract and a summary could be read here (it
    optimises the instructions with NeuralUCB and trains a parameter-efficient module per
    iteration with O-LoRA's orthogonality between modules, on toxicity, named-entity and code
    forgetting); its equations and code could not. At toy scale: (1) the instruction search
    is UCB1 over a fixed pool of 12 templates, not NeuralUCB over generated instructions,
    and its reward (the target contrast) is ours, chosen because it needs no forget data and
    no judge model; (2) each round's LoRA module is merged before the next, with no
    orthogonality term between rounds; (3) the filter is the contrast threshold, and the
    forget loss is the project's NPO (+ retain NLL) with the causal-LM defaults of ``npo``
    (``beta = 0.1``); (4) the tiny models here answer only in their QA template, so the
    instructions are questions put in that template. Cost: every generated and every scored
    sequence counts one example forward, besides the loop's.
    """

    name = "reveal_release"
    summary = "Unlearn from self-generated data about the forget target (instruction search, rounds of LoRA + NPO)"
    Params = RevealReleaseParams
    modalities = ("causal_lm",)
    citation = (
        "Xie, Teng, Ke, Wen and Wang 2025 (Findings of EMNLP; arXiv 2509.14624), Reveal and Release: Iterative LLM "
        "Unlearning with Self-generated Data"
    )
    needs_retain = True
    uses_lora = False  # each round brings its own LoRA module, merged before the next

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        result = super().unlearn(task, seed, progress)
        result.extra.update(self._extra)
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        from ..modalities.causal_lm.adapter import encode_qa, with_lora

        p, adapter = self.params, task.adapter
        names = forget_target(task, p.target) if p.data == "revealed" else []
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        lora = dict(task.lora or {"r": p.lora_rank})
        template = task.retain.meta.get("template") or "Question: {question}\nAnswer:"
        max_len = int(getattr(getattr(model, "config", None), "max_position_embeddings", 10**6))
        total = LoopStats()
        self._extra = {"targets": len(names), "revealed_rows": [], "instructions": []}
        for k in range(p.rounds):
            left = None if p.max_steps is None else p.max_steps - total.steps
            if left is not None and left <= 0:
                break
            if p.data == "forget":
                data = task.forget
            else:
                rows, info = reveal(model, task, names, p, derive_seed(seed, "round", k), total)
                self._extra["revealed_rows"].append(len(rows))
                self._extra["instructions"].append(info["instructions"])
                if not rows:  # the model reveals nothing more about the target: done
                    break
                rows = [{"example_id": f"revealed/{k}/{i:04d}", **r} for i, r in enumerate(rows)]
                data = encode_qa(rows, adapter.tokenizer, max_len, chat_template=template, name=f"revealed/{k}")
            ref_ll = adapter.frozen_log_likelihood(ref, len(data))

            def objective(ctx, ref_ll=ref_ll):
                batch = ctx.batch("forget")
                if p.loss == "npo":
                    ref_lp, n_ref = ref_ll(batch)
                    ctx.count_forward(n_ref)
                    loss = npo_loss(adapter.sequence_log_likelihood(ctx.model, batch), ref_lp, p.beta)
                else:
                    loss = gradient_ascent_loss(adapter.per_example_loss(ctx.model, batch))
                if p.retain_weight:
                    loss = loss + p.retain_weight * adapter.per_example_loss(ctx.model, ctx.batch("retain")).mean()
                return loss

            streams = {"forget": data} | ({"retain": task.retain} if p.retain_weight else {})
            # peft draws lora_A from the global RNG (the device's, on a GPU): seed it, then restore it
            dev = torch.device(task.device)
            with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                torch.manual_seed(int(derive_seed(seed, "lora", k) % (2**63)))
                wrapped = with_lora(model, **lora)
            try:
                stats = run_loop(
                    wrapped,
                    objective,
                    streams,
                    p.train_config(max_steps=left),
                    derive_seed(seed, "release", k),
                    primary="forget",
                    device=task.device,
                    progress=progress,
                    desc=f"{self.name} round {k + 1}",
                    adapter=adapter,
                )
            finally:
                merged = wrapped.merge_and_unload()  # the base model, its weights updated in place
            if merged is not model:
                raise RuntimeError("reveal_release: peft returned another model than the one it wrapped")
            total = total + stats
        return total
