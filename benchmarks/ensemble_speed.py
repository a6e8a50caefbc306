"""Speed of training many shadow models at once: vectorised ensemble vs a Python loop.

64 MLPs (the project's default ``mlp``) on digits, each trained with the task's recipe
(``make_task("digits", "mlp")``: 30 epochs, batch 64, Adam 1e-3, weight decay 5e-4, clip 5)
on the task's retain set, as shadow retrains are. The same 64 seeds (same initialisation,
same data order) go once through ``train_many(..., vectorize=True)`` and once through
``train_many(..., vectorize=False)`` (a loop over ``run_loop``), in this one run, after a
short warm-up of both. Prints the test accuracy of both sets of models (they must agree
within float32 noise), the load average of the machine, the time per vectorised step of
the two forward forms (hand-batched ``baddbmm`` and ``torch.func.vmap``), the same comparison
for *unlearning* the 64 models by fine-tuning and by NegGrad+ (``Method.unlearn_many``, what
U-LiRA's shadow unlearns do), the time one step's matrix products alone take (the floor any
exact float32 vectorisation must pay, hence the ceiling on the speed-up), and the training
speed-up (loop wall time / vectorised wall time) as its last line.

    python benchmarks/ensemble_speed.py [--models 64] [--threads 0 (= torch's default)]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from unlearnkit.engines.ensemble import ensemble_logits, train_many
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.modalities.classifier.task import make_task


def time_forms(task, cfg, seeds, steps: int = 30) -> dict[str, float]:
    """Milliseconds per vectorised step of the two forward forms on the same batches."""
    from unlearnkit.engines.ensemble import _chain, _ChainStack, _clip_per_model, _losses, _VmapStack
    from unlearnkit.engines.loop import make_optimizer

    gen = torch.Generator().manual_seed(0)
    data = task.retain
    idx = torch.randint(0, len(data), (steps, len(seeds), cfg.batch_size), generator=gen)
    w = torch.full((len(seeds), cfg.batch_size), 1.0 / cfg.batch_size)
    out = {}
    for name in ("bmm", "vmap"):
        models = [task.model_factory(s).train() for s in seeds]
        stack = _ChainStack(models, _chain(models[0])) if name == "bmm" else _VmapStack(models)
        opt = make_optimizer(stack.leaves, cfg, fused=True)
        for k in range(steps):
            if k == 5:  # warm-up steps excluded
                t0 = time.perf_counter()
            loss = _losses(stack, task.adapter, data.inputs[idx[k]], data.labels[idx[k]], w)
            for p in stack.leaves:
                p.grad = None
            loss.sum().backward()
            _clip_per_model(stack.leaves, cfg.grad_clip, seeds, k)
            opt.step()
        out[name] = 1e3 * (time.perf_counter() - t0) / (steps - 5)
    return out


def gemm_floor_ms(task, cfg, n_models: int, reps: int = 30) -> float:
    """Milliseconds per vectorised step spent in the matrix products alone: the forward
    product of every layer, and in the backward the weight gradient of every layer and the
    input gradient of every layer but the first (what any exact float32 implementation of
    one step must compute), timed as bare ``torch.bmm`` calls on random data, best of 3.
    The loop's time per 64 model-steps over this is the highest speed-up this machine allows."""
    dims = [tuple(p.shape) for p in task.original.parameters() if p.ndim == 2]  # (out, in)
    E, B = n_models, cfg.batch_size
    ops = []
    for i, (o, n) in enumerate(dims):
        h, w, g = torch.randn(E, B, n), torch.randn(E, n, o), torch.randn(E, B, o)
        ops.append(lambda h=h, w=w: torch.bmm(h, w))
        ops.append(lambda h=h, g=g: torch.bmm(h.transpose(1, 2), g))
        if i > 0:
            ops.append(lambda g=g, w=w: torch.bmm(g, w.transpose(1, 2)))
    best = float("inf")
    for _ in range(3):
        for f in ops:
            f()
        t0 = time.perf_counter()
        for _ in range(reps):
            for f in ops:
                f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return 1e3 * best


def accuracies(models, data) -> np.ndarray:
    logits = ensemble_logits(models, data.inputs)
    return (logits.argmax(-1) == data.labels).float().mean(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=None, help="default: the recipe's (30)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = make_task("digits", "mlp", seed=0)
    cfg = task.recipe
    if args.epochs is not None:
        cfg = TrainConfig(**{**cfg.to_dict(), "epochs": args.epochs})
    seeds = list(range(1000, 1000 + args.models))
    data = task.retain
    shapes = [tuple(p.shape) for p in task.original.parameters() if p.ndim == 2]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"{args.models} MLPs, weights {shapes}; {len(data)} examples each, recipe {cfg.to_dict()}"
    )
    warm = TrainConfig(**{**cfg.to_dict(), "max_steps": 3})
    for v in (True, False):  # first-call costs (allocator, kernels, vmap) out of the timing
        train_many(task.model_factory, data, task.adapter, warm, seeds[:2], vectorize=v)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    t0, c0 = time.perf_counter(), time.process_time()
    vec, vec_cost = train_many(task.model_factory, data, task.adapter, cfg, seeds, vectorize=True)
    t_vec, c_vec = time.perf_counter() - t0, time.process_time() - c0
    print(f"load average after vectorised: {os.getloadavg()[0]:.2f}")
    t0, c0 = time.perf_counter(), time.process_time()
    loop, loop_cost = train_many(task.model_factory, data, task.adapter, cfg, seeds, vectorize=False)
    t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
    print(f"load average after loop: {os.getloadavg()[0]:.2f}")
    a_vec, a_loop = accuracies(vec, task.test), accuracies(loop, task.test)
    diff = np.abs(a_vec - a_loop)
    pdiff = max(
        max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) for a, b in zip(vec, loop)
    )
    print(
        f"steps per model {vec_cost.steps // args.models} (loop {loop_cost.steps // args.models}); "
        f"examples forward {vec_cost.examples_forward} (loop {loop_cost.examples_forward})"
    )
    print(
        f"test accuracy  vectorised {a_vec.mean():.4f} ± {a_vec.std():.4f}   "
        f"loop {a_loop.mean():.4f} ± {a_loop.std():.4f}"
    )
    print(
        f"per model |accuracy difference| max {diff.max():.4f} ({int((diff > 0).sum())}/{len(diff)} "
        f"models differ; one test example = {1 / len(task.test):.4f}); "
        f"max |parameter difference| {pdiff:.2e} (float32 rounding, amplified by Adam where "
        "gradients are near zero; see unlearnkit.ensemble)"
    )
    print(
        f"wall time  vectorised {t_vec:.1f} s ({1e3 * t_vec / vec_cost.steps:.3f} ms per model-step)   "
        f"loop {t_loop:.1f} s ({1e3 * t_loop / loop_cost.steps:.3f} ms per model-step)"
    )
    print(f"CPU time (all threads)  vectorised {c_vec:.1f} s   loop {c_loop:.1f} s   ratio {c_loop / c_vec:.1f}x")
    # unlearning many models at once: the 64 trained models unlearned on the task's forget
    # request (what U-LiRA's shadow unlearns do), vectorised vs one unlearn each
    from unlearnkit.methods import Method, get_method

    for name in ("finetune", "graddiff"):
        m = get_method(name)
        useeds = [s + 5000 for s in seeds]
        t0 = time.perf_counter()
        u_vec, _ = m.unlearn_many(task, vec, useeds)
        t_uvec = time.perf_counter() - t0
        t0 = time.perf_counter()
        u_loop, _ = Method.unlearn_many(m, task, vec, useeds)  # the one-by-one default
        t_uloop = time.perf_counter() - t0
        ua_vec, ua_loop = accuracies(u_vec, task.forget), accuracies(u_loop, task.forget)
        print(
            f"unlearning ({name}, {m.params.epochs:g} epochs) of the {args.models} models: "
            f"vectorised {t_uvec:.1f} s, one by one {t_uloop:.1f} s, speedup {t_uloop / t_uvec:.1f}x; "
            f"forget accuracy {ua_vec.mean():.4f} vs {ua_loop.mean():.4f} "
            f"(max per-model difference {np.abs(ua_vec - ua_loop).max():.4f})"
        )
    forms = time_forms(task, cfg, seeds)
    print(
        f"per vectorised step of {args.models} models: bmm form {forms['bmm']:.1f} ms, "
        f"vmap form {forms['vmap']:.1f} ms (the chain MLP uses the bmm form); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    floor = gemm_floor_ms(task, cfg, args.models)
    loop_step = 1e3 * t_loop / loop_cost.steps * args.models
    print(
        f"matrix products alone of one {args.models}-model step: {floor:.1f} ms; the loop takes "
        f"{loop_step:.1f} ms per {args.models} model-steps, so no exact float32 vectorisation can beat "
        f"{loop_step / floor:.1f}x on this machine (the vectorised step takes "
        f"{1e3 * t_vec / vec_cost.steps * args.models:.1f} ms)"
    )
    print(f"speedup {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
