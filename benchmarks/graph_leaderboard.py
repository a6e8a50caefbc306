"""The graph leaderboard: every graph method on two graphs, GNNDelete's settings, three seeds.

Link prediction (2-layer GCN, inner-product decoder) with 2.5% and 5% of the training edges
deleted, sampled inside (``edges-in``) or outside (``edges-out``) the 2-hop enclosing
subgraph of the test edges, as GNNDelete does (Cheng et al., ICLR 2023); node classification
with 5% of the training nodes deleted (``nodes:0.05``: each node, its features and its
edges). Graphs: the 3-nearest-neighbour graph over scikit-learn's digits (1,797 nodes,
``digits-knn:3``) and a stochastic block model of 2,000 nodes and mean degree 3
(``sbm:2000:3``), sparse as Cora is (mean degree 3.9): on denser graphs the 2-hop region of
the test edges is the whole graph and ``edges-out`` has nothing to draw from. Link tasks hold
5% of the edges out as test edges (GNNDelete's split); node tasks 20% of the nodes.
GraphEraser runs also with its two other partitions (``blpa``, ``random``). Every method registered for the ``graph`` modality
runs at its graph defaults from the task's original; the metrics are the graph catalogue's
(DT/DF AUC and AUP, the membership-inference ratio, node accuracies, gaps to the retrained
reference) from :func:`unlearnkit.orchestration.experiment.compare`. Cost ratios are the
method's wall time (and examples through forward+backward) over retrain's, measured in the
same job under the same load.

    python benchmarks/graph_leaderboard.py [--seeds 0,1,2] [--workers 2]
        [--graphs digits-knn:3,sbm:2000:3] [--methods a,b]

``--scaling 1000,10000,100000`` instead measures the cost curve: one seed of link prediction
on SBM graphs of those sizes (5% of the edges deleted, uniformly), every method's wall time
and examples next to retrain's. There the recipe and every method that has a ``batch_size``
take all rows in one batch (one full-graph step per epoch at every size; the default recipe
takes 4,096 rows a step, which at 100k nodes would be 100 full-graph passes an epoch), and
``--skip-at`` names methods left out above a size (``inpo:20000``: its exact removal
influence is one full-graph pass per deleted edge).

Writes benchmarks/results/graph_leaderboard.{md,json,png} and every run's record as JSON lines
(graph_leaderboard_runs.jsonl; ``--summarise`` rebuilds the tables from it), or
graph_scaling.{md,json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

LINK_COLUMNS = [
    "dt_auc",
    "dt_aup",
    "df_auc",
    "df_aup",
    "gap_dt_auc",
    "gap_df_auc",
    "mi_ratio",
    "cost_ratio_time",
    "cost_ratio_examples",
    "forget_passes",
]
NODE_COLUMNS = [
    "node_acc_forget",
    "node_acc_retain",
    "node_acc_test",
    "gap_node_acc_forget",
    "gap_node_acc_retain",
    "gap_node_acc_test",
    "cost_ratio_time",
    "cost_ratio_examples",
    "forget_passes",
]
LINK_SCENARIOS = ["edges-in:0.025", "edges-in:0.05", "edges-out:0.025", "edges-out:0.05"]
NODE_SCENARIOS = ["nodes:0.05"]
#: GNNDelete's split: 5% of the edges are test edges (with the default 20% the 2-hop region
#: of the test edges covers these graphs and no edge lies outside it)
LINK_TEST_FRACTION = 0.05
#: beside each method at its defaults: GraphEraser's two other partitions
VARIANTS = [("graph_eraser", {"partition": "blpa"}), ("graph_eraser", {"partition": "random"})]


def graph_methods() -> list[str]:
    from unlearnkit.methods import METHODS

    return [m for m in sorted(METHODS) if m != "retrain" and "graph" in METHODS[m].modalities]


def job(graph: str, kind: str, scenario: str, seed: int, methods: list[str], home: str, threads: int) -> list[dict]:
    """Every method on one (graph, task kind, scenario, seed): the original, the reference,
    then the methods in order, as records."""
    import torch

    from unlearnkit.modalities.graph.task import make_graph_task
    from unlearnkit.orchestration.experiment import Workspace, compare

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    split = {"test_fraction": LINK_TEST_FRACTION} if kind == "link" else {}
    task = make_graph_task(graph, kind, "gcn", scenario, seed=seed, cache=ws.cache, **split)
    extra = [(m, p) for m, p in VARIANTS if m in methods]
    cmp = compare(task, [*methods, *extra], seed=seed, workspace=None)
    return [r.to_dict() for r in cmp.records]


def scaling_job(n: int, methods: list[str], skip_at: dict[str, int], seed: int, threads: int) -> list[dict]:
    """One seed of link prediction on ``sbm:n``, full-batch everywhere (see the module doc)."""
    import torch

    from unlearnkit.methods import METHODS
    from unlearnkit.modalities.graph.task import default_recipe, make_graph_task
    from unlearnkit.orchestration.experiment import compare

    torch.set_num_threads(threads)
    full = 1 << 30
    recipe = dataclasses.replace(default_recipe("link"), batch_size=full)
    t0 = time.perf_counter()
    task = make_graph_task(f"sbm:{n}", "link", "gcn", "edges:0.05", seed=seed, recipe=recipe)
    build_s = time.perf_counter() - t0
    run = []
    for m in methods:
        if n > skip_at.get(m, math.inf):
            continue
        names = {f.name for f in dataclasses.fields(METHODS[m].Params)}
        run.append((m, {"batch_size": full} if "batch_size" in names else {}))
    cmp = compare(task, run, seed=seed, workspace=None)
    out = []
    for r in cmp.records:
        d = r.to_dict()
        d["tags"] = {**d.get("tags", {}), "nodes": n, "build_and_original_s": build_s}
        out.append(d)
    return out


def goal_check(link_rows: list[dict], node_rows: list[dict]) -> list[str]:
    """Issue 14's goal, on means over seeds: within 1 point of the reference on DT AUC (link)
    or on retain and test node accuracy (node), DF AUC within 0.05 of the reference's (link;
    on node deletion the forget nodes' accuracy within 5 points stands in for it), at no
    more than 10% of retrain's wall time."""
    hits = []
    for r in link_rows:
        m = r.get("mean", {})
        vals = [m.get(k, math.nan) for k in ("gap_dt_auc", "gap_df_auc", "cost_ratio_time")]
        if r.get("role") == "unlearn" and all(math.isfinite(v) for v in vals):
            g_dt, g_df, cost = vals
            if g_dt <= 0.01 and g_df <= 0.05 and cost <= 0.10:
                hits.append(
                    f"{r['task']} {r['scenario']}: {r['method']} (DT gap {g_dt:.3f}, DF gap {g_df:.3f}, {cost:.3f}x)"
                )
    for r in node_rows:
        m = r.get("mean", {})
        keys = ("gap_node_acc_retain", "gap_node_acc_test", "gap_node_acc_forget", "cost_ratio_time")
        vals = [m.get(k, math.nan) for k in keys]
        if r.get("role") == "unlearn" and all(math.isfinite(v) for v in vals):
            g_r, g_t, g_f, cost = vals
            if max(g_r, g_t) <= 0.01 and g_f <= 0.05 and cost <= 0.10:
                hits.append(
                    f"{r['task']} {r['scenario']}: {r['method']} (acc gaps retain {g_r:.3f}, test {g_t:.3f}, "
                    f"forget {g_f:.3f}, {cost:.3f}x)"
                )
    return hits


def run_leaderboard(args, methods: list[str]) -> None:
    from unlearnkit.evaluation.cost import forget_set_passes
    from unlearnkit.modalities import get_modality
    from unlearnkit.orchestration.records import RunRecord
    from unlearnkit.orchestration.report import figure_png, markdown_table, plot_tradeoff, summarise

    get_modality("graph").part("task")  # what the summary reads, imported before any job runs
    seeds = [int(s) for s in args.seeds.split(",")]
    graphs = args.graphs.split(",")
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    work = [(g, "link", sc, s) for g in graphs for sc in LINK_SCENARIOS for s in seeds]
    work += [(g, "node", sc, s) for g in graphs for sc in NODE_SCENARIOS for s in seeds]
    runs_file = Path(args.out) / "graph_leaderboard_runs.jsonl"
    t0 = time.perf_counter()
    records: list = []
    if args.summarise:  # the records of an earlier run, summarised again
        docs = [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]
        records = [RunRecord.from_dict(d) for d in docs[1:]]
        elapsed = docs[0]["elapsed_s"]
        for r in records:  # runs recorded before the forget_passes metric existed: the same formula
            if r.status == "ok" and "forget_passes" not in r.metrics and r.cost and r.forget_ids:
                fwd, bwd = r.cost["examples_forward"], r.cost["examples_backward"]
                r.metrics["forget_passes"] = forget_set_passes(fwd, bwd, len(r.forget_ids))
    else:
        runs_file.parent.mkdir(parents=True, exist_ok=True)
        partial = runs_file.with_suffix(".partial")
        with partial.open("w") as fh, tempfile.TemporaryDirectory() as home, ProcessPoolExecutor(args.workers) as ex:
            futs = {ex.submit(job, *w, methods, home, threads): w for w in work}
            done = []
            for i, f in enumerate(as_completed(futs)):
                done += f.result()
                for d in f.result():  # kept as they come: a failure later loses no job
                    fh.write(json.dumps(d, default=str) + "\n")
                fh.flush()
                print(f"[{time.perf_counter() - t0:6.0f}s] job {i + 1}/{len(futs)} done {futs[f]}", flush=True)
        elapsed = time.perf_counter() - t0
        runs_file.write_text("\n".join(json.dumps(d, default=str) for d in [{"elapsed_s": elapsed}, *done]) + "\n")
        partial.unlink()
        records = [RunRecord.from_dict(d) for d in done]
    for r in records:  # one row per scenario over seeds: a node deletion's row count differs by seed
        r.scenario = {k: v for k, v in (r.scenario or {}).items() if k != "count"}
    link = [r for r in records if r.task_spec.get("task") == "link"]
    node = [r for r in records if r.task_spec.get("task") == "node"]
    link_rows, node_rows = summarise(link, LINK_COLUMNS), summarise(node, NODE_COLUMNS)
    hits = goal_check(link_rows, node_rows)
    failed = sorted({f"{r.method} ({r.scenario.get('kind')})" for r in records if r.status == "failed"})
    cmd = (
        f"python benchmarks/graph_leaderboard.py --seeds {args.seeds} --workers {args.workers} --graphs {args.graphs}"
        + (f" --methods {args.methods}" if args.methods else "")
    )
    header = (
        "# Graph leaderboard: GNNDelete's settings on two graphs\n\n"
        f"Graphs {', '.join(graphs)}; 2-layer GCN; link tasks hold {LINK_TEST_FRACTION:.0%} of the edges out as "
        "test edges (GNNDelete's split), node tasks 20% of the nodes; "
        f"seeds {args.seeds} (each seed its own test split, "
        f"deletion and initialisations); {len(records)} runs; {elapsed / 60:.1f} min on {os.cpu_count()} "
        f"cores with {args.workers} workers.\n\nRegenerate: `{cmd}`\n\n"
        "Link prediction: `edges-in:F` / `edges-out:F` delete a fraction F of the training edges drawn "
        "inside / outside the 2-hop enclosing subgraph of the test edges (GNNDelete's two settings). "
        "DT AUC/AUP: test edges against their negative pairs; DF AUC/AUP: deleted edges against as "
        "many retained ones (mean of 100 draws), the reference's value is the target; MI ratio: "
        "membership-inference probability of the deleted edges after over before. Node "
        "classification: `nodes:0.05` deletes 5% of the training nodes with their features and "
        "edges; accuracy on the deleted, retained and test nodes. Gaps are absolute differences to "
        "the retrained reference; cost is a ratio of retrain's wall time / examples in the same job. "
        "Every model, the original's included, is scored on the graph after deletion.\n\n"
        "Goal (issue 14): a method within 1 point of the reference on DT AUC (link) or retain and "
        "test node accuracy (node), DF AUC within 0.05 of the reference's (node deletion: the deleted "
        "nodes' accuracy within 5 points), at no more than 10% of retrain's wall time, on means "
        "over seeds. Met by: "
        + ("; ".join(hits) if hits else "none in this run")
        + "\n\n"
        + (f"Failed runs: {', '.join(failed)}\n\n" if failed else "")
    )
    body = (
        "## Link prediction, edge deletion\n\n"
        + markdown_table(link_rows, LINK_COLUMNS)
        + "\n\n## Node classification, node deletion\n\n"
        + markdown_table(node_rows, NODE_COLUMNS)
        + "\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph_leaderboard.md").write_text(header + body)
    (out / "graph_leaderboard.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "seeds": seeds,
                "graphs": graphs,
                "link_scenarios": LINK_SCENARIOS,
                "node_scenarios": NODE_SCENARIOS,
                "methods": methods,
                "elapsed_s": elapsed,
                "goal_met_by": hits,
                "link_rows": link_rows,
                "node_rows": node_rows,
            },
            indent=1,
            default=str,
            allow_nan=True,
        )
    )
    (out / "graph_leaderboard.png").write_bytes(figure_png(plot_tradeoff(link_rows, x="gap_df_auc", y="dt_auc")))
    (out / "graph_leaderboard_nodes.png").write_bytes(
        figure_png(plot_tradeoff(node_rows, x="gap_node_acc_forget", y="node_acc_test"))
    )
    print(header + body)


def plot_scaling(points: dict[str, dict[int, float]], ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for name, pts in sorted(points.items(), key=lambda kv: (kv[0] != "retrain", kv[0])):
        xs = sorted(pts)
        style = {"color": "black", "linewidth": 2.5} if name == "retrain" else {}
        ax.plot(xs, [pts[x] for x in xs], marker="o", label=name, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes (SBM, mean degree about 10)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def run_scaling(args, methods: list[str]) -> None:
    from unlearnkit.orchestration.report import figure_png

    sizes = [int(s) for s in args.scaling.split(",")]
    skip_at = {k: int(v) for k, v in (x.split(":") for x in args.skip_at.split(",") if x)}
    threads = os.cpu_count() or 1
    t0 = time.perf_counter()
    rows: list[dict] = []
    for n in sizes:  # one size at a time, all cores: the ratios compare runs of one job
        recs = scaling_job(n, methods, skip_at, args.seed, threads)
        for d in recs:
            m = d.get("metrics", {})
            rows.append(
                {
                    "nodes": n,
                    "method": "retrain" if d["kind"] == "reference" else d["method"],
                    "kind": d["kind"],
                    "status": d.get("status"),
                    "wall_time_s": m.get("wall_time_s", math.nan),
                    "examples": m.get("examples_forward", math.nan) + m.get("examples_backward", math.nan),
                    "cost_ratio_time": m.get("cost_ratio_time", math.nan),
                    "cost_ratio_examples": m.get("cost_ratio_examples", math.nan),
                    "dt_auc": m.get("dt_auc", math.nan),
                    "gap_df_auc": m.get("gap_df_auc", math.nan),
                }
            )
        print(f"[{time.perf_counter() - t0:6.0f}s] sbm:{n} done", flush=True)
    elapsed = time.perf_counter() - t0
    rows = [r for r in rows if r["kind"] in ("reference", "unlearn")]
    cmd = f"python benchmarks/graph_leaderboard.py --scaling {args.scaling} --skip-at {args.skip_at} --seed {args.seed}"
    names = sorted({r["method"] for r in rows}, key=lambda s: (s != "retrain", s))
    lines = [
        "# Graph scaling curve: cost against graph size\n",
        f"Link prediction on SBM graphs (4 blocks, mean degree about 10), 5% of the training edges "
        f"deleted uniformly, 2-layer GCN, seed {args.seed}; the recipe and every method with a "
        "`batch_size` full-batch (one full-graph step per epoch at every size); "
        + (f"left out above a size: {args.skip_at}; " if args.skip_at else "")
        + f"{elapsed / 60:.1f} min on {os.cpu_count()} cores.\n",
        f"Regenerate: `{cmd}`\n",
        "Seconds of wall time (method / retrain in parentheses); retrain is the reference's "
        "retraining in the same job.\n",
        "| method | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    cell = {(r["method"], r["nodes"]): r for r in rows}
    for name in names:
        cells = []
        for n in sizes:
            r = cell.get((name, n))
            if r is None:
                cells.append("skipped")
            elif r["status"] == "failed":
                cells.append("failed")
            elif name == "retrain":
                cells.append(f"{r['wall_time_s']:.2f}")
            else:
                cells.append(f"{r['wall_time_s']:.2f} ({r['cost_ratio_time']:.3f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph_scaling.md").write_text("\n".join(lines) + "\n")
    (out / "graph_scaling.json").write_text(
        json.dumps({"command": cmd, "sizes": sizes, "elapsed_s": elapsed, "rows": rows}, indent=1, allow_nan=True)
    )
    secs = {
        nm: {r["nodes"]: r["wall_time_s"] for r in rows if r["method"] == nm and r["status"] == "ok"} for nm in names
    }
    (out / "graph_scaling.png").write_bytes(figure_png(plot_scaling(secs, "wall time (s)")))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--graphs", default="digits-knn:3,sbm:2000:3")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every graph method)")
    ap.add_argument("--scaling", default=None, help="comma-separated SBM sizes: measure the cost curve instead")
    ap.add_argument("--skip-at", default="inpo:20000", help="METHOD:NODES pairs: leave METHOD out above NODES")
    ap.add_argument("--seed", type=int, default=0, help="the scaling curve's seed")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--summarise",
        action="store_true",
        help="summarise the runs a previous leaderboard run kept (OUT/graph_leaderboard_runs.jsonl) again",
    )
    args = ap.parse_args()
    methods = args.methods.split(",") if args.methods else graph_methods()
    if args.scaling:
        run_scaling(args, methods)
    else:
        run_leaderboard(args, methods)


if __name__ == "__main__":
    main()
