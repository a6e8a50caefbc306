"""Generated multi-step reasoning: symbolic chains with traces and final answers.

A seeded world of ``n_functions`` one-digit functions (``f``, ``g``, ``h``, ...), each a
random table ``digit -> digit``. An example is a chain of 2-3 applications and its worked
trace::

    question: "a=3, b=f(a), c=g(b). c?"
    answer:   "b=f(3)=7; c=g(7)=2. Answer: 2"

Every step of every trace is one *fact* of the world (``f(3)=7``), and each fact is a sub-step
of many training examples, so which examples a model is trained on decides which facts it
knows: removing every example that teaches ``f(3)=7`` leaves a model that has to guess that
step of any question needing it (the lever the reasoning unlearning attack,
:mod:`unlearnkit.evaluation.reasoning_attack`, pulls). A tiny Llama with a byte tokenizer
learns the facts and the copying between steps in a minute or two on a CPU.

The rows are the causal-LM modality's QA schema (``example_id``, ``subject_id``,
``question``, ``answer``, ``kind``, ``perturbed_answers``, ``paraphrased_answer``):
``example_id`` is ``reasoning/<split>/<index>``, ``subject_id`` the contributor who wrote the
example (``contributor/<k>``: a deletion request can name one). :meth:`ReasoningData.save`
writes ``retain.jsonl`` (the training examples) and ``holdout.jsonl`` (never-trained
questions), the folder layout ``make_lm_task(source=<folder>)`` and ``--task qa --dataset``
load. Each row's ``perturbed_answers`` are well-formed traces with one step's result
changed and the rest of the chain recomputed (plausible but wrong), its
``paraphrased_answer`` the same trace with ``->`` for ``=`` in its steps, so TOFU's truth
ratio (and the service gate's ``forget_quality``) can be computed on it.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..utils import atomic_dir, fingerprint_ids

FUNCTION_NAMES = "fghkmpqrstuvwxyz"
VARIABLES = "abcde"
STEP = re.compile(r"^([a-e])=([a-z])\((\d)\)=(\d)$")
TRACE = re.compile(r"^(?P<steps>.+)\. Answer: (?P<answer>\d)$")


@dataclass
class ReasoningData:
    """A generated reasoning world and its examples.

    Attributes:
        functions: function name -> its table (``table[d]`` = value at digit ``d``).
        train: the training rows (schema in the module docstring).
        holdout: never-trained questions (distinct from every training question).
        meta: the generator's arguments and a fingerprint of the ids.
    """

    functions: dict[str, list[int]]
    train: list[dict]
    holdout: list[dict]
    meta: dict = field(default_factory=dict)

    def fact_counts(self) -> dict[str, int]:
        """How many training traces use each fact (``"f(3)=7"``), a fact counted once per trace."""
        counts: dict[str, int] = {}
        for r in self.train:
            for fact in set(facts_of(r["answer"])):
                counts[fact] = counts.get(fact, 0) + 1
        return counts

    def examples_with_fact(self, fact: str) -> list[str]:
        """Ids of the training examples whose trace uses ``fact``."""
        return [r["example_id"] for r in self.train if fact in facts_of(r["answer"])]

    def save(self, path: str | Path) -> Path:
        """Write ``retain.jsonl``, ``holdout.jsonl`` and ``meta.json`` into ``path`` (a new or
        empty folder, or one this method wrote), all at once or nothing."""
        path = Path(path)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / "meta.json").is_file())):
            raise DataError(f"{path} exists and is not a reasoning dataset; choose a new or empty folder")
        with atomic_dir(path) as tmp:
            for name, rows in (("retain", self.train), ("holdout", self.holdout)):
                with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(json.dumps(r) + "\n")
            meta = {**self.meta, "functions": self.functions}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return path


def generate_reasoning(
    n_train: int = 300,
    n_holdout: int = 60,
    n_functions: int = 6,
    n_values: int = 10,
    min_steps: int = 2,
    max_steps: int = 3,
    n_contributors: int = 50,
    n_perturbed: int = 2,
    seed: int = 0,
) -> ReasoningData:
    """Generate a reasoning world and ``n_train`` + ``n_holdout`` distinct chain questions.

    Args:
        n_train, n_holdout: training examples and never-trained questions.
        n_functions: functions of the world (each a table over the digits ``0..n_values-1``).
        n_values: how many digits the functions take and return (2-10).
        min_steps, max_steps: the chain length range (applications per question).
        n_contributors: the subjects the training examples are spread over.
        n_perturbed: wrong-but-well-formed traces kept per row (truth ratios).
        seed: everything is drawn from it; the same arguments give the same rows.
    """
    if not 1 <= n_functions <= len(FUNCTION_NAMES):
        raise ConfigError(f"n_functions must be between 1 and {len(FUNCTION_NAMES)}, not {n_functions}")
    if not 2 <= n_values <= 10:
        raise ConfigError(f"n_values must be between 2 and 10 (one digit each), not {n_values}")
    if not 1 <= min_steps <= max_steps <= len(VARIABLES) - 1:
        raise ConfigError(f"need 1 <= min_steps <= max_steps <= {len(VARIABLES) - 1}, not {min_steps}..{max_steps}")
    if n_train < 1 or n_holdout < 1 or n_contributors < 1 or n_perturbed < 0:
        raise ConfigError("n_train, n_holdout and n_contributors must be >= 1, n_perturbed >= 0")
    possible = sum(n_values * n_functions**k for k in range(min_steps, max_steps + 1))
    if n_train + n_holdout > possible:
        raise ConfigError(
            f"only {possible} distinct questions exist; ask for at most that many, not {n_train + n_holdout}"
        )
    rng = random.Random(seed)
    names = FUNCTION_NAMES[:n_functions]
    functions = {f: [rng.randrange(n_values) for _ in range(n_values)] for f in names}
    seen: set[tuple] = set()
    chains = []
    while len(chains) < n_train + n_holdout:
        k = rng.randint(min_steps, max_steps)
        chain = (rng.randrange(n_values), tuple(rng.choice(names) for _ in range(k)))
        if chain not in seen:
            seen.add(chain)
            chains.append(chain)
    rows = []
    for i, (start, fs) in enumerate(chains):
        split = "train" if i < n_train else "holdout"
        j = i if split == "train" else i - n_train
        row = {
            "example_id": f"reasoning/{split}/{j:05d}",
            "subject_id": f"contributor/{rng.randrange(n_contributors):03d}" if split == "train" else None,
            "question": question_of(start, fs),
            "answer": trace_of(start, fs, functions),
            "kind": "direct",
            "start": start,
            "functions": "".join(fs),
        }
        row["paraphrased_answer"] = row["answer"].replace(")=", ")->")
        row["perturbed_answers"] = [
            trace_of(start, fs, functions, change=(s, (functions[fs[s]][v] + d) % n_values))
            for s, v, d in _perturbations(start, fs, functions, n_perturbed, n_values, rng)
        ]
        rows.append(row)
    train, holdout = rows[:n_train], rows[n_train:]
    meta = {
        "args": {
            "n_train": n_train,
            "n_holdout": n_holdout,
            "n_functions": n_functions,
            "n_values": n_values,
            "min_steps": min_steps,
            "max_steps": max_steps,
            "n_contributors": n_contributors,
            "n_perturbed": n_perturbed,
            "seed": seed,
        },
        "fingerprints": {"train": fingerprint_ids([r["example_id"] + r["answer"] for r in train])},
    }
    return ReasoningData(functions, train, holdout, meta)


def _perturbations(
    start: int, fs: tuple, functions: dict, n: int, n_values: int, rng: random.Random
) -> list[tuple[int, int, int]]:
    """``n`` (step, input value, offset) choices: which step's result is changed and by how much."""
    values = step_values(start, fs, functions)
    return [(s, values[s], rng.randrange(1, n_values)) for s in (rng.randrange(len(fs)) for _ in range(n))]


def question_of(start: int, fs: tuple | str) -> str:
    """``"a=3, b=f(a), c=g(b). c?"``"""
    parts = [f"{VARIABLES[0]}={start}"]
    parts += [f"{VARIABLES[i + 1]}={f}({VARIABLES[i]})" for i, f in enumerate(fs)]
    return ", ".join(parts) + f". {VARIABLES[len(fs)]}?"


def step_values(start: int, fs: tuple | str, functions: dict, change: tuple[int, int] | None = None) -> list[int]:
    """The value entering each step (``[a, b, ...]``, one more than the steps); ``change``
    ``(step, value)`` replaces that step's result (the rest of the chain is recomputed)."""
    values = [start]
    for s, f in enumerate(fs):
        v = functions[f][values[-1]]
        values.append(change[1] if change is not None and change[0] == s else v)
    return values


def trace_of(start: int, fs: tuple | str, functions: dict, change: tuple[int, int] | None = None) -> str:
    """``"b=f(3)=7; c=g(7)=2. Answer: 2"`` (with ``change``: one step's result replaced)."""
    values = step_values(start, fs, functions, change)
    steps = [f"{VARIABLES[s + 1]}={f}({values[s]})={values[s + 1]}" for s, f in enumerate(fs)]
    return "; ".join(steps) + f". Answer: {values[-1]}"


def facts_of(trace: str) -> list[str]:
    """The facts a trace states, in order (``["f(3)=7", "g(7)=2"]``); [] if it is not well formed."""
    parsed = parse_trace(trace)
    return [] if parsed is None else [f"{f}({x})={y}" for _, f, x, y in parsed["steps"]]


def parse_trace(text: str) -> dict | None:
    """``{"steps": [(var, fn, input, result), ...], "answer": int}`` of a well-formed trace
    (steps ``v=f(d)=d`` joined by ``"; "``, then ``". Answer: d"``, each step's input the previous
    step's result, the answer the last result); None otherwise."""
    m = TRACE.match(text.strip())
    if m is None:
        return None
    steps = []
    for part in m.group("steps").split("; "):
        s = STEP.match(part)
        if s is None:
            return None
        steps.append((s.group(1), s.group(2), int(s.group(3)), int(s.group(4))))
    chained = all(steps[i][2] == steps[i - 1][3] for i in range(1, len(steps)))
    named = all(v == VARIABLES[i + 1] for i, (v, _, _, _) in enumerate(steps))
    if not (chained and named and int(m.group("answer")) == steps[-1][3]):
        return None
    return {"steps": steps, "answer": int(m.group("answer"))}


def final_answer(text: str) -> int | None:
    """The digit after ``Answer:`` in ``text`` (well formed or not), or None."""
    m = re.search(r"Answer: (\d)", text)
    return int(m.group(1)) if m else None


def trace_matches_question(question: str, trace: str) -> bool:
    """Whether a well-formed ``trace`` applies the question's functions to its start value in
    order (plausible for that question, whatever its facts say)."""
    parsed = parse_trace(trace)
    m = re.match(r"^a=(\d), (.*)\. ([a-e])\?$", question.strip())
    if parsed is None or m is None:
        return False
    fs = re.findall(r"=([a-z])\(", m.group(2))
    return [f for _, f, _, _ in parsed["steps"]] == fs and parsed["steps"][0][2] == int(m.group(1))
