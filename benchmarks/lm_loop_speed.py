"""Language-model unlearning loop vs a Hugging Face ``Trainer`` peer (issue 12).

The peer is the form OpenUnlearning uses: a ``transformers.Trainer`` subclass overriding
``compute_loss``, fed by a dataset that pairs each forget row with a random retain row and
a collator that right-pads each side to its batch's longest row; the frozen reference's
forward runs under ``no_grad`` at every step, and the sequence log-likelihoods come from the
full ``(B, T, V)`` logits (OpenUnlearning's ``compute_batch_nll``: token cross-entropy with
``ignore_index=-100``, summed per row). It is written here for the comparison (none of
OpenUnlearning's code is copied or imported) and computes the same losses as unlearnkit's
methods:

* ``npo``: ``(2/beta) mean softplus(beta (log p(y|x) - log p_ref(y|x))) + w_r mean_r NLL``;
* ``graddiff``: ``alpha mean_r NLL - (1 - alpha) mean_f NLL``;
* ``simnpo``: ``-(2/beta) mean log sigmoid(-(beta/|y|) log p(y|x) - gamma) + w_r mean_r NLL``;

with NLL the mean answer-token negative log-likelihood of each row (unlearnkit's
``per_example_loss``). Both sides use the same tiny Llama (the task's original, trained
from scratch), the same forget and retain rows, batch size, step count, Adam (``adamw_torch``
with weight decay 0 on the peer), learning rate, constant schedule and gradient clipping at
5. Each timed run is a whole unlearning call of ``--steps`` steps from the original: copying
the model (and the reference), the optimiser set-up and the steps (unlearnkit:
``Method.unlearn``; peer: building the ``Trainer`` and ``trainer.train()``). One warm-up run
of each, then ``--reps`` repetitions in alternating order; the medians are compared.

    python benchmarks/lm_loop_speed.py [--people 100] [--steps 20] [--batch-size 32] [--reps 3]
        [--methods npo,graddiff,simnpo] [--home DIR] [--device cpu]

Writes benchmarks/results/lm_loop_speed.{md,json}. The original is trained once and cached
under ``--home`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))

IGNORE = -100


# --------------------------------------------------------------------------- the peer
def row_nll_sum(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer-token NLL per row and the answer lengths, from the full logits."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels = inputs["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=IGNORE, reduction="none")
    return nll.sum(-1), (labels != IGNORE).sum(-1)


def make_peer_trainer(method: str, params: dict, model, ref, forget, retain, args, out_dir: str):
    """A ``Trainer`` whose ``compute_loss`` is ``method``'s loss (OpenUnlearning's form)."""
    from transformers import Trainer, TrainingArguments

    class ForgetRetain(torch.utils.data.Dataset):
        """Each forget row with a uniformly drawn retain row (OpenUnlearning's anchor="forget")."""

        def __init__(self, seed: int):
            self.gen = torch.Generator().manual_seed(seed)

        def __len__(self) -> int:
            return len(forget)

        @staticmethod
        def row(es, i: int) -> dict:
            n = int(es.attention_mask[i].sum())
            return {"input_ids": es.inputs[i, :n], "labels": es.labels[i, :n]}

        def __getitem__(self, i: int) -> dict:
            j = int(torch.randint(len(retain), (1,), generator=self.gen))
            return {"forget": self.row(forget, i), "retain": self.row(retain, j)}

    def pad_side(rows: list[dict], pad_id: int) -> dict:
        t = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
        lab = torch.full((len(rows), t), IGNORE, dtype=torch.long)
        am = torch.zeros((len(rows), t), dtype=torch.long)
        for k, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[k, :n], lab[k, :n], am[k, :n] = r["input_ids"], r["labels"], 1
        return {"input_ids": ids, "attention_mask": am, "labels": lab}

    pad_id = int(forget.meta.get("pad_token_id", 0))

    def collate(items: list[dict]) -> dict:
        return {side: pad_side([it[side] for it in items], pad_id) for side in ("forget", "retain")}

    class UnlearnTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            f, r = inputs["forget"], inputs["retain"]
            if method == "graddiff":
                nf, lf = row_nll_sum(model, f)
                nr, lr = row_nll_sum(model, r)
                a = params["alpha"]
                loss = a * (nr / lr.clamp_min(1)).mean() - (1 - a) * (nf / lf.clamp_min(1)).mean()
                return (loss, None) if return_outputs else loss
            nf, lf = row_nll_sum(model, f)
            if method == "npo":
                with torch.no_grad():
                    nref, _ = row_nll_sum(ref, f)
                beta = params["beta"]
                forget_loss = (2.0 / beta) * F.softplus(beta * (nref - nf)).mean()
            else:  # simnpo
                beta, gamma = params["beta"], params["gamma"]
                forget_loss = -(2.0 / beta) * F.logsigmoid((beta / lf) * nf - gamma).mean()
            nr, lr = row_nll_sum(model, r)
            loss = forget_loss + params["retain_weight"] * (nr / lr.clamp_min(1)).mean()
            return (loss, None) if return_outputs else loss

    targs = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=params["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=5.0,
        optim="adamw_torch",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=0,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer = UnlearnTrainer(model=model, args=targs, train_dataset=ForgetRetain(0), data_collator=collate)
    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics line
    return trainer


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_peer(method: str, params: dict, task, args, out_dir: str) -> tuple[float, float]:
    """(wall, process CPU) seconds of one peer unlearning call."""
    _sync(args.device)
    t0, c0 = time.perf_counter(), time.process_time()
    model = copy.deepcopy(task.original).to(task.device).train()
    ref = copy.deepcopy(task.original).to(task.device).eval().requires_grad_(False) if method == "npo" else None
    trainer = make_peer_trainer(method, params, model, ref, task.forget, task.retain, args, out_dir)
    trainer.train()
    _sync(args.device)
    return time.perf_counter() - t0, time.process_time() - c0


def run_ours(method: str, params: dict, task, args) -> tuple[float, float]:
    """(wall, process CPU) seconds of one ``Method.unlearn`` call."""
    from unlearnkit.methods import METHODS

    m = METHODS[method](**params, max_steps=args.steps, batch_size=args.batch_size, epochs=1000.0)
    _sync(args.device)
    t0, c0 = time.perf_counter(), time.process_time()
    res = m.unlearn(task, seed=0)
    _sync(args.device)
    elapsed = time.perf_counter() - t0, time.process_time() - c0
    assert res.cost.steps == args.steps, res.cost.steps
    return elapsed


def method_params(method: str) -> dict:
    """The hyperparameters both sides use: unlearnkit's causal-LM defaults."""
    from unlearnkit.methods import METHODS

    p = METHODS[method]().params_for("causal_lm")
    keys = {"npo": ("lr", "beta", "retain_weight"), "graddiff": ("lr", "alpha"), "simnpo": ("lr", "beta", "gamma")}
    out = {k: getattr(p, k) for k in keys[method]}
    if method == "simnpo":
        out["retain_weight"] = p.retain_weight
    if method == "graddiff" and p.retain_loss != "nll":
        raise SystemExit("error: graddiff's causal-LM default retain_loss is not nll; the peer writes nll")
    return out


# --------------------------------------------------------------------------- evaluation
#: the parts an LM evaluation's time is split into (exclusive times; the relearning attack
#: includes the training, scoring and generation it runs)
EVAL_PARTS = {
    "forward passes (teacher forcing)": ("teacher_forced",),
    "greedy generation": ("greedy_generation",),
    "relearning attack": ("relearn", "relearn/training", "relearn/teacher_forced", "relearn/greedy_generation"),
    "FADE sampling": ("fade_sampling",),
    "FADE scoring": ("fade_scoring",),
}


class _Timer:
    """Exclusive wall time per nested label of the wrapped functions."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.excl: dict[str, float] = {}

    def wrap(self, module, name: str, label: str) -> None:
        f = getattr(module, name)

        def timed(*a, **k):
            t = time.perf_counter()
            self.stack.append(label)
            try:
                return f(*a, **k)
            finally:
                d = time.perf_counter() - t
                self.stack.pop()
                key = "/".join([*self.stack, label])
                self.excl[key] = self.excl.get(key, 0.0) + d
                if self.stack:
                    outer = "/".join(self.stack)
                    self.excl[outer] = self.excl.get(outer, 0.0) - d

        setattr(module, name, timed)

    def split(self, total: float) -> dict[str, float]:
        parts = {k: sum(self.excl.get(x, 0.0) for x in keys) for k, keys in EVAL_PARTS.items()}
        parts["metrics and the rest"] = total - sum(self.excl.values())
        return parts


def eval_benchmark(task, args) -> dict:
    """Time one NPO run (the causal-LM defaults) and the full LM evaluation of its model."""
    import copy as _copy

    from unlearnkit.engines import loop as loop_mod
    from unlearnkit.methods import METHODS
    from unlearnkit.modalities.causal_lm import attacks, scores
    from unlearnkit.orchestration import experiment as E

    timer = _Timer()
    timer.wrap(scores, "_teacher_forced", "teacher_forced")
    timer.wrap(scores, "generate_answers", "greedy_generation")
    timer.wrap(attacks, "relearn_attack", "relearn")
    timer.wrap(loop_mod, "run_loop", "training")  # relearn_attack imports it at call time
    timer.wrap(attacks, "_samples", "fade_sampling")
    timer.wrap(attacks, "_sequence_logprob", "fade_scoring")
    t0 = time.perf_counter()
    res = METHODS["npo"]().unlearn(task, seed=0)
    t_npo = time.perf_counter() - t0
    if args.save_model:
        torch.save(res.model.state_dict(), args.save_model)
    if args.load_model:  # the same weights before and after a change: metric values comparable
        res.model.load_state_dict(torch.load(args.load_model))
    if args.reference == "retrain":
        ref, _, _ = E.get_reference(task, 0, cache=args.cache)
    else:
        ref = task.original
    ref_scores = E.score_model(ref, task)
    E.evaluate_model(ref, task, ref_scores, reference_model=ref)  # compare()'s reference row first
    out = {"npo_s": t_npo, "npo_steps": res.cost.steps}
    for label, model in (("cold", res.model), ("warm", _copy.deepcopy(res.model))):
        timer.excl.clear()
        t0 = time.perf_counter()
        ev = E.evaluate_model(model, task, ref_scores, res.cost, task.original_cost, reference_model=ref)
        total = time.perf_counter() - t0
        out[label] = {"eval_s": total, "ratio_to_npo": total / t_npo, "split_s": timer.split(total)}
        out.setdefault("metrics", {k: v for k, v in ev.metrics.items()})
    return out


def main() -> None:
    from llm_leaderboard import task_args

    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.artifacts import ModelCache

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--qa", type=int, default=10)
    ap.add_argument("--forget", default="forget10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default="npo,graddiff,simnpo")
    ap.add_argument("--home", default=None, help="workspace whose model cache holds (or receives) the original")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument(
        "--eval",
        action="store_true",
        help="instead: time one NPO run and the full LM evaluation of its model (split by part)",
    )
    ap.add_argument(
        "--reference",
        choices=("original", "retrain"),
        default="original",
        help="--eval: the reference the metrics compare with (retrain: the cached retrain, trained if absent)",
    )
    ap.add_argument("--baseline", default=None, help="a JSON this script wrote before a change, shown beside")
    ap.add_argument("--label", default=None, help="what code this run measures (default: this checkout's commit)")
    ap.add_argument("--save-model", default=None, help="--eval: save the NPO model's weights here")
    ap.add_argument(
        "--load-model", default=None, help="--eval: evaluate these weights (a --save-model file) instead of the run's"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    bad = sorted(set(methods) - {"npo", "graddiff", "simnpo"})
    if bad:
        raise SystemExit(f"error: the peer is written for npo, graddiff and simnpo, not {', '.join(bad)}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home or tmp)
        args.cache = ModelCache(home / "cache")
        task = make_lm_task(
            "profiles",
            forget=args.forget,
            seed=0,
            cache=args.cache,
            device=args.device,
            **task_args(args.people, args.qa),
        )
        if args.eval:
            return write_eval(eval_benchmark(task, args), task, args)
        rows = []
        for method in methods:
            params = method_params(method)
            run_ours(method, params, task, args)  # warm-up
            run_peer(method, params, task, args, tmp)
            ours, peer = [], []
            for rep in range(args.reps):
                order = ("ours", "peer") if rep % 2 == 0 else ("peer", "ours")
                for side in order:
                    if side == "ours":
                        ours.append(run_ours(method, params, task, args))
                    else:
                        peer.append(run_peer(method, params, task, args, tmp))
            o, p = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in peer)
            oc, pc = statistics.median(c for _, c in ours), statistics.median(c for _, c in peer)
            row = {
                "method": method,
                "params": params,
                "ours_s": o,
                "peer_s": p,
                "ours_step_ms": 1000 * o / args.steps,
                "peer_step_ms": 1000 * p / args.steps,
                "ratio": p / o,
                "ours_cpu_s": oc,
                "peer_cpu_s": pc,
                "ratio_cpu": pc / oc,
                "ours_all_s": [w for w, _ in ours],
                "peer_all_s": [w for w, _ in peer],
                "ours_all_cpu_s": [c for _, c in ours],
                "peer_all_cpu_s": [c for _, c in peer],
            }
            rows.append(row)
            print(
                f"{method:9s} unlearnkit {o:7.2f}s ({row['ours_step_ms']:6.1f} ms/step, CPU {oc:.2f}s)   "
                f"Trainer peer {p:7.2f}s ({row['peer_step_ms']:6.1f} ms/step, CPU {pc:.2f}s)   "
                f"ratio {row['ratio']:.2f}x (CPU time {row['ratio_cpu']:.2f}x)",
                flush=True,
            )
    write_loop(rows, task, args)


def _command(args) -> str:
    cmd = (
        f"python benchmarks/lm_loop_speed.py --people {args.people} --qa {args.qa} --forget {args.forget} "
        f"--device {args.device}" + (f" --threads {args.threads}" if args.threads else "")
    )
    if args.eval:
        return (
            cmd
            + f" --eval --reference {args.reference}"
            + (f" --load-model {args.load_model}" if args.load_model else "")
        )
    return cmd + f" --steps {args.steps} --batch-size {args.batch_size} --reps {args.reps} --methods {args.methods}"


def _setting(task, args) -> dict:
    import subprocess

    pkg = Path(__import__("unlearnkit").__file__).resolve().parent
    here = Path(__file__).resolve().parent.parent
    commit = (
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here).stdout.strip()
        if pkg.is_relative_to(here)
        else None
    )
    return {
        "people": args.people,
        "forget": args.forget,
        "forget_rows": len(task.forget),
        "retain_rows": len(task.retain),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "model": task.spec["model"],
        "unlearnkit": str(pkg),
        "commit": args.label or commit,
    }


def _baseline(args) -> dict | None:
    return json.loads(Path(args.baseline).read_text()) if args.baseline else None


def write_loop(rows: list[dict], task, args) -> None:
    cmd, setting = _command(args), {**_setting(task, args), "steps": args.steps, "batch_size": args.batch_size}
    base = _baseline(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": cmd, "setting": setting, "rows": rows, "baseline": base}
    (out / "lm_loop_speed.json").write_text(json.dumps(doc, indent=1))
    lines = [
        "# Language-model loop vs a Hugging Face Trainer peer",
        "",
        f"Command: `{cmd}`",
        "",
        f"Setting: {json.dumps(setting)}. Times are medians of {args.reps} warm runs per side in alternating "
        "order, each a whole unlearning call of the given steps from the original (model copies, optimiser "
        "set-up, steps). Ratio = peer time / unlearnkit time (higher: unlearnkit faster); wall time and the "
        "process's CPU time (with one torch thread, the measure other processes on a shared machine disturb "
        "least).",
        "",
        "| method | unlearnkit (s) | ms/step | Trainer peer (s) | ms/step | ratio | CPU s, ours / peer | ratio (CPU) |"
        + (" before: ratio | before: ratio (CPU) |" if base else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if base else ""),
    ]
    before = {r["method"]: r for r in (base or {}).get("rows", [])}
    for r in rows:
        b = before.get(r["method"])
        extra = ""
        if base:
            extra = f" {b['ratio']:.2f}x | {b['ratio_cpu']:.2f}x |" if b and "ratio_cpu" in b else " | |"
        lines.append(
            f"| {r['method']} | {r['ours_s']:.2f} | {r['ours_step_ms']:.1f} | {r['peer_s']:.2f} | "
            f"{r['peer_step_ms']:.1f} | {r['ratio']:.2f}x | {r['ours_cpu_s']:.2f} / {r['peer_cpu_s']:.2f} | "
            f"{r['ratio_cpu']:.2f}x |" + extra
        )
    if base:
        lines += [
            "",
            f"Before: the same command on the code of commit {base['setting'].get('commit')} "
            f"(`{base['setting'].get('unlearnkit')}`), `--baseline` of this run.",
        ]
    (out / "lm_loop_speed.md").write_text("\n".join(lines) + "\n")


def write_eval(res: dict, task, args) -> None:
    cmd, setting = _command(args), _setting(task, args)
    base = _baseline(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": cmd, "setting": setting, **res, "baseline": base}
    if base is not None:
        m0 = base.get("metrics", {})
        doc["metrics_differing_from_baseline"] = {
            k: [m0[k], v]
            for k, v in res["metrics"].items()
            if k in m0 and not (m0[k] == v or (m0[k] != m0[k] and v != v))
        }
    (out / "lm_loop_speed_eval.json").write_text(json.dumps(doc, indent=1))
    runs = [("after", res)] + ([("before", base)] if base else [])
    lines = [
        "# Language-model evaluation cost vs one NPO run",
        "",
        f"Command: `{cmd}`",
        "",
        f"Setting: {json.dumps(setting)}. One NPO run with the causal-LM defaults ({res['npo_steps']} steps), "
        "then the full LM metric set of its model (`evaluate_model`: TOFU values, MIA scores, greedy "
        "generations, probes, the relearning attack, FADE) against the reference, after the reference's own "
        "row (as `compare` does). Cold: the first model compared with the reference (the reference's FADE "
        "samples are drawn then); warm: a second model (a copy) with the reference's side cached. Exclusive "
        "wall times per part, seconds.",
        "",
        "| code | NPO run (s) | eval cold (s) | ratio | eval warm (s) | ratio | "
        + " | ".join(f"{k} (cold)" for k in res["cold"]["split_s"])
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(res["cold"]["split_s"]),
    ]
    for name, r in runs:
        lines.append(
            f"| {name} | {r['npo_s']:.2f} | {r['cold']['eval_s']:.2f} | {r['cold']['ratio_to_npo']:.2f}x | "
            f"{r['warm']['eval_s']:.2f} | {r['warm']['ratio_to_npo']:.2f}x | "
            + " | ".join(f"{r['cold']['split_s'].get(k, float('nan')):.2f}" for k in res["cold"]["split_s"])
            + " |"
        )
    if base:
        diff = doc["metrics_differing_from_baseline"]
        lines += [
            "",
            f"Before: commit {base['setting'].get('commit')} (`{base['setting'].get('unlearnkit')}`). Metric values "
            f"that differ from before: {json.dumps(diff) if diff else 'none'} ("
            + (
                "both evaluate the same weights (`--load-model`); "
                if args.load_model
                else "the NPO models of the two codes differ at float level; "
            )
            + "cost metrics measure the runs).",
        ]
    (out / "lm_loop_speed_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
