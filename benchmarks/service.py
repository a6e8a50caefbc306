"""The deletion-request service under load, batching's amortisation, and a random kill loop,
on each database back end (SQLite, PostgreSQL), all measured in one run.

One digits MLP is trained once (``unlearnkit train``) into a template workspace; every part
starts from a fresh copy of it (and, on PostgreSQL, a fresh database created for the part
on the server of ``--pg-url`` and dropped at the end, the template's runs copied into it).

1. **Load on loopback.** ``unlearnkit serve --no-worker`` (API only: no batch runs, so
   unlearning does not compete with the API for the CPU) as a subprocess on a free
   127.0.0.1 port, one API key with a rate limit no client reaches, one line registered over
   HTTP with a batch no load fills (max_size 1000, window 3600 s). ``--requests`` deletion
   requests, one distinct training example id each, each with its own Idempotency-Key, from
   ``--clients`` threads (one keep-alive httpx client each); then a GET of every accepted
   request's status (with its timeline, as the API answers by default) from the same
   threads. Reported: accepted requests per second, p50/p99 latency, statuses counted; the
   database afterwards (requests stored, contiguous ``seq``, one open batch holding them
   all, the audit log verifying).
2. **Batching amortisation.** ``--amortise`` single-subject requests submitted together,
   answered in-process through the workflow's own control flow
   (``workflows.answer_batch`` + ``call_step``, as ``tests/service_support.py`` drives it)
   from fresh workspaces side by side: *batched* (max_size N: one batch), *one by one*
   (submitted together, max_size 1: N batches, each from the previous version; every
   batch's reference leaves out all N requests' examples, tombstoned at submission, so they
   share one reference) and *arriving* (max_size 1, each request submitted only after the
   previous one is answered: the steady state, where every batch needs its own reference). Otherwise the modality's
   default policy (finetune, the classifier gate and canary); a batch the canary holds is
   released at once (counted). Reported per side: wall seconds of answering (submissions
   excluded), unlearn runs and their examples forward/backward (the run store's ``cost``),
   reference retrains actually computed (new ``reference-*`` entries of the workspace's
   model cache, each with the cost of its training) and their examples, gate escalations
   (an escalation's ``retrain`` run reuses the cached reference: it records that cost but
   computes nothing, so it is not counted again), holds; and the ratios one-by-one /
   batched of seconds and of examples computed. Repeated ``--amortise-repeats`` times from
   fresh workspaces, alternating which side runs first; wall seconds are the median (the
   first repeat's batched side also carries the process's one-time warm-up).
3. **Random kill loop.** An API-only serve takes submissions from 2 submitter threads
   (distinct subjects, one Idempotency-Key per submission, retried once with the same key
   after a timeout or connection error; every ``--flaky-every``-th first attempt is given a
   2 ms client timeout on purpose, so the retry meets its first attempt still in flight or
   done) while a real ``unlearnkit worker --worker-id w1``
   is SIGKILLed at a random moment 0.5-4 s (uniform) after it reports it has started and is
   restarted, for ``--kill-seconds``; an operator thread releases held batches over the
   API. Then a final worker (not killed) runs until every request is answered (bounded by
   ``--drain-timeout``). Policy: max_size 4, window 1 s, the rest default. Reported:
   submissions, accepted, answered, lost (accepted and not answered, or missing),
   duplicated (more than one unrevoked certificate for a request, a request in two
   promoted batches or answered in two versions, a subject in two requests), kills,
   restarts, DBOS workflow states, whether the audit log verifies
   (``audit.verify_log``) and whether the version chain is linear (each version's parent
   the previous one).

Everything is bounded: request counts are fixed, every wait has a deadline, the servers
listen on 127.0.0.1 only and are stopped at the end. Prints a table per part, writes
``--out`` (JSON: settings, machine, versions, the exact command, the date, every figure)
and a Markdown summary beside it (same name, ``.md``).

    python benchmarks/service.py --backends sqlite,postgresql \\
        [--pg-url postgresql+psycopg://user:pw@127.0.0.1:5432/db (default $UNLEARNKIT_BENCH_PG_URL)] \\
        [--out benchmarks/results/service.json]

The PostgreSQL role needs CREATEDB (each part gets its own database).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

UNLEARNKIT = str(Path(sys.executable).with_name("unlearnkit"))
FLAKY_TIMEOUT_S = 0.002  # part 3: the client timeout of every --flaky-every-th submission's first attempt
SCOPES = ["model:admin", "deletion:submit", "deletion:read"]
TERMINAL = ("answered", "failed", "refused")


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values, q) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def ms(values) -> dict:
    return {
        "p50_ms": round(1000 * pct(values, 50), 2) if values else None,
        "p99_ms": round(1000 * pct(values, 99), 2) if values else None,
        "mean_ms": round(1000 * float(np.mean(values)), 2) if values else None,
        "max_ms": round(1000 * float(np.max(values)), 2) if values else None,
    }


def log_problems(folder: Path, pattern: str) -> dict:
    """Lines of the service's logs under ``folder`` at level WARNING or above, or tracebacks."""
    hits = []
    for f in sorted(folder.glob(pattern)):
        for line in f.read_text(errors="replace").splitlines():
            if (
                "Traceback" in line
                or re.search(r'"level": "(WARNING|ERROR|CRITICAL)"', line)
                or line.startswith("ERROR")
            ):
                hits.append(f"{f.name}: {line[:300]}")
    return {"count": len(hits), "first": hits[:8]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    from unlearnkit.service.workflows import CRASH_ENV

    return {k: v for k, v in os.environ.items() if k != CRASH_ENV}


def run_cli(*args: str, timeout: float = 300) -> str:
    p = subprocess.run([UNLEARNKIT, *args], capture_output=True, text=True, timeout=timeout, env=child_env())
    if p.returncode != 0:
        raise SystemExit(f"unlearnkit {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def safe(url: str | None) -> str | None:
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def others_running() -> list[str]:
    """Other tests or benchmarks running now (pgrep -af "pytest|benchmarks/"), this one excepted."""
    p = subprocess.run(["pgrep", "-af", "pytest|benchmarks/"], capture_output=True, text=True)
    mine = {str(os.getpid()), str(os.getppid())}
    return [line for line in p.stdout.splitlines() if line.split(" ", 1)[0] not in mine and "pgrep" not in line]


class Workspaces:
    """A template workspace (one trained model) and fresh copies of it, each with its own
    PostgreSQL database where the back end is PostgreSQL."""

    def __init__(self, root: Path, pg_url: str | None):
        self.root, self.pg_url = root, pg_url
        self.template = root / "template"
        self.databases: list[str] = []
        self.run_id = json.loads(run_cli("train", "--home", str(self.template), "--json"))["run_id"]

    def fresh(self, tag: str, backend: str) -> tuple[Path, str | None]:
        home = self.root / f"{backend}-{tag}"
        shutil.copytree(self.template, home)
        if backend == "sqlite":
            return home, None
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        from unlearnkit.orchestration.store import RunStore

        base = make_url(self.pg_url)
        name = f"ukbench_{os.getpid()}_{re.sub('[^a-z0-9]', '_', tag)}_{secrets.token_hex(3)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.databases.append(name)
        url = base.set(database=name).render_as_string(hide_password=False)
        src, dst = RunStore(home / "runs.db", mode="r"), RunStore(url)
        try:
            for rec in reversed(src.list()):
                dst.add(rec)
        finally:
            src.close()
            dst.close()
        return home, url

    def drop(self) -> None:
        if not self.databases:
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            for name in self.databases:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def service(home: Path, url: str | None, enqueue=None):
    from unlearnkit.service.core import Service

    return Service(home, url, enqueue=enqueue)


def close(svc) -> None:
    svc.engine.dispose()
    if svc.reader is not svc.engine:
        svc.reader.dispose()
    svc.workspace.store.close()


def store_args(url: str | None) -> list[str]:
    return ["--store", url] if url else []


class Server:
    """``unlearnkit serve --no-worker`` on a free loopback port."""

    def __init__(self, home: Path, url: str | None, logdir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(logdir / f"serve-{self.port}.log", "w")
        cmd = [UNLEARNKIT, "serve", "--home", str(home), *store_args(url), "--no-worker"]
        cmd += ["--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=child_env())
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited {self.proc.returncode}: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("serve did not become ready in 120 s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def audit_ok(svc) -> tuple[bool, list[str], int]:
    from unlearnkit.service import audit

    with svc.reader.connect() as c:
        exported = audit.export(c, svc.public_key_pem())
    rep = audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem())
    return rep.ok, rep.problems[:5], rep.entries


# --------------------------------------------------------------------------- part 1
def part_load(ws: Workspaces, backend: str, args, example_ids: list[str]) -> dict:
    import httpx
    from sqlalchemy import select

    from unlearnkit.service.db import batches, deletion_requests

    home, url = ws.fresh("load", backend)
    svc = service(home, url)
    token, _ = svc.create_key("bench-load", SCOPES, rate_per_minute=10_000_000)
    close(svc)
    srv = Server(home, url, ws.root)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            srv.base + "/v1/model-lines",
            json={
                "name": "load",
                "train_run": ws.run_id,
                "policy": {"batch": {"max_size": 1000, "window_seconds": 3600}},
            },
            headers=headers,
            timeout=120,
        )
        assert r.status_code == 201, r.text
        ids = example_ids[: args.requests]
        jobs = list(enumerate(ids))
        lock = threading.Lock()
        posts: list[tuple[float, str, str | None]] = []
        starts: list[float] = []

        def submitter():
            with httpx.Client(base_url=srv.base, headers=headers, timeout=60) as client:
                while True:
                    with lock:
                        if not jobs:
                            return
                        i, ex = jobs.pop()
                    t = time.perf_counter()
                    try:
                        resp = client.post(
                            "/v1/model-lines/load/deletion-requests",
                            json={"example_ids": [ex]},
                            headers={"Idempotency-Key": f"load-{i}"},
                        )
                        status, rid = (
                            str(resp.status_code),
                            (resp.json().get("id") if resp.status_code == 202 else None),
                        )
                    except httpx.HTTPError as e:
                        status, rid = f"error:{type(e).__name__}", None
                    with lock:
                        posts.append((time.perf_counter() - t, status, rid))
                        starts.append(t)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=submitter) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        post_wall = time.perf_counter() - t0
        accepted = [rid for _, s, rid in posts if s == "202"]
        in_order = [p for _, p in sorted(zip(starts, posts), key=lambda x: x[0])]
        q = max(1, len(in_order) // 4)

        gets: list[tuple[float, str]] = []
        todo = list(accepted)

        def reader():
            with httpx.Client(base_url=srv.base, headers=headers, timeout=60) as client:
                while True:
                    with lock:
                        if not todo:
                            return
                        rid = todo.pop()
                    t = time.perf_counter()
                    try:
                        status = str(client.get(f"/v1/deletion-requests/{rid}").status_code)
                    except httpx.HTTPError as e:
                        status = f"error:{type(e).__name__}"
                    with lock:
                        gets.append((time.perf_counter() - t, status))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=reader) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        get_wall = time.perf_counter() - t0
    finally:
        srv.stop()

    svc = service(home, url)
    try:
        with svc.reader.connect() as c:
            seqs = [r.seq for r in c.execute(select(deletion_requests.c.seq).order_by(deletion_requests.c.seq))]
            bats = c.execute(select(batches.c.state, batches.c.request_ids)).all()
        ok, problems, n_entries = audit_ok(svc)
    finally:
        close(svc)
    return {
        "requests": len(ids),
        "clients": args.clients,
        "submit": {
            "wall_s": round(post_wall, 3),
            "accepted": len(accepted),
            "accepted_per_s": round(len(accepted) / post_wall, 1),
            "statuses": dict(Counter(s for _, s, _ in posts)),
            **ms([t for t, s, _ in posts if s == "202"]),
            "p50_ms_first_quarter": ms([t for t, _, _ in in_order[:q]])["p50_ms"],
            "p50_ms_last_quarter": ms([t for t, _, _ in in_order[-q:]])["p50_ms"],
        },
        "status_get": {
            "wall_s": round(get_wall, 3),
            "gets": len(gets),
            "per_s": round(len(gets) / get_wall, 1) if get_wall else None,
            "statuses": dict(Counter(s for _, s in gets)),
            **ms([t for t, s in gets if s == "200"]),
        },
        "log_problems": log_problems(ws.root, f"serve-{srv.port}.log"),
        "database_after": {
            "requests_stored": len(seqs),
            "seq_contiguous": seqs == list(range(1, len(seqs) + 1)),
            "batches": [{"state": s, "requests": len(r)} for s, r in bats],
            "audit_verifies": ok,
            "audit_problems": problems,
            "audit_entries": n_entries,
        },
    }


# --------------------------------------------------------------------------- part 2
def _reference_entries(home: Path) -> dict[str, dict]:
    out = {}
    for p in (home / "cache" / "index").glob("reference-*.json"):
        entry = json.loads(p.read_text())
        out[entry["key"]] = entry
    return out


def part_amortise(ws: Workspaces, backend: str, args, subjects: list[str]) -> dict:
    chosen = subjects[: args.amortise]
    repeats = []
    for r in range(args.amortise_repeats):
        order = (("batched", args.amortise), ("one_by_one", 1), ("arriving", 1))
        if r % 2:
            order = order[::-1]  # alternate which side runs first
        repeats.append({side: _amortise_side(ws, backend, chosen, side, max_size, r) for side, max_size in order})
    sides = {}
    for side in SIDES:
        each = [rp[side] for rp in repeats]
        summary = dict(each[0])
        summary["wall_s_each"] = [e["wall_s"] for e in each]
        summary["wall_s"] = round(float(np.median(summary["wall_s_each"])), 2)
        varying = [
            k
            for k in each[0]
            if k not in ("wall_s", "unlearn_train_s", "reference_train_s") and any(e[k] != each[0][k] for e in each)
        ]
        summary["differs_between_repeats"] = varying
        summary["unlearn_train_s"] = round(float(np.median([e["unlearn_train_s"] for e in each])), 2)
        summary["reference_train_s"] = round(float(np.median([e["reference_train_s"] for e in each])), 2)
        sides[side] = summary
    b = sides["batched"]
    sides["repeats"] = args.amortise_repeats
    for side in ("one_by_one", "arriving"):
        o = sides[side]
        sides[f"ratio_{side}_over_batched"] = {
            "wall_s": round(o["wall_s"] / b["wall_s"], 2),
            "wall_s_each_repeat": [round(rp[side]["wall_s"] / rp["batched"]["wall_s"], 2) for rp in repeats],
            "examples_forward": round(o["examples_forward"] / b["examples_forward"], 2),
            "examples_backward": round(o["examples_backward"] / b["examples_backward"], 2),
            "reference_retrains": round(o["reference_retrains"] / max(1, b["reference_retrains"]), 2),
            "unlearn_runs": round(o["unlearn_runs"] / max(1, b["unlearn_runs"]), 2),
        }
    return sides


#: part 2's sides: all requests in one batch; submitted together, answered in N batches;
#: arriving one at a time, each answered before the next is submitted (steady state: each
#: batch's reference is its own)
SIDES = ("batched", "one_by_one", "arriving")


def _amortise_side(ws: Workspaces, backend: str, chosen: list[str], side: str, max_size: int, repeat: int) -> dict:
    from service_driver import Queue, answer

    home, url = ws.fresh(f"amortise-{side}-{repeat}", backend)
    q = Queue()
    queue = q.batches
    svc = service(home, url, enqueue=q)
    try:
        svc.register_line("amortise", ws.run_id, {"batch": {"max_size": max_size, "window_seconds": 0}})
        arriving = side == "arriving"
        reqs = [] if arriving else [svc.submit("amortise", subjects=[s]).body for s in chosen]
        before = _reference_entries(home)
        states, released = [], 0
        wall = 0.0
        done = 0
        for s in chosen if arriving else [None]:
            if arriving:
                reqs.append(svc.submit("amortise", subjects=[s]).body)  # not timed: as on the other sides
            t0 = time.perf_counter()
            while done < len(queue):
                end, holds, _ = answer(svc, queue[done], reason="benchmark: released at once")
                states.append(end)
                released += holds
                done += 1
            wall += time.perf_counter() - t0
        new_refs = {k: v for k, v in _reference_entries(home).items() if k not in before}
        runs = {rec.id: rec for rec in svc.workspace.store.list()}
        info = [svc.get_batch(b) for b in queue]
        unlearn = [runs[f"{b}-unlearn"] for b in queue if f"{b}-unlearn" in runs]
        retrains = [runs[f"{b}-retrain"] for b in queue if f"{b}-retrain" in runs]
        ref_arts = {v["artifact"] for v in new_refs.values()}
        answered = sum(svc.get_request(r["id"], timeline=False)["state"] == "answered" for r in reqs)
        version = svc.get_line("amortise")["current_version"]
    finally:
        close(svc)
    uf = sum(int(r.cost.get("examples_forward", 0)) for r in unlearn)
    ub = sum(int(r.cost.get("examples_backward", 0)) for r in unlearn)
    rf = sum(int(v["info"]["cost"].get("examples_forward", 0)) for v in new_refs.values())
    rb = sum(int(v["info"]["cost"].get("examples_backward", 0)) for v in new_refs.values())
    return {
        "max_size": max_size,
        "requests": len(reqs),
        "examples_deleted": sum(r["examples"] for r in reqs),
        "batches": len(queue),
        "end_states": dict(Counter(states)),
        "answered": answered,
        "final_version": version,
        "wall_s": round(wall, 2),
        "unlearn_runs": len(unlearn),
        "unlearn_examples_forward": uf,
        "unlearn_examples_backward": ub,
        "unlearn_train_s": round(sum(float(r.cost.get("wall_time_s", 0)) for r in unlearn), 2),
        "reference_retrains": len(new_refs),
        "reference_examples_forward": rf,
        "reference_examples_backward": rb,
        "reference_train_s": round(sum(float(v["info"]["cost"].get("wall_time_s", 0)) for v in new_refs.values()), 2),
        "distinct_reference_models": len(ref_arts),
        "examples_forward": uf + rf,
        "examples_backward": ub + rb,
        "gate_passed_first_time": sum(bool(i["steps"].get("verify", {}).get("passed")) for i in info),
        "escalations": len(retrains),
        "escalations_reusing_cached_reference": sum(r.artifact in ref_arts for r in retrains),
        "held_then_released": released,
    }


# --------------------------------------------------------------------------- part 3
class KillLoop:
    """A ``unlearnkit worker --worker-id w1`` SIGKILLed 0.5-4 s after each start, restarted."""

    def __init__(self, home: Path, url: str | None, logdir: Path, rng: random.Random):
        self.home, self.url, self.logdir, self.rng = home, url, logdir, rng
        self.kills = self.starts = self.not_ready = 0
        self.kill_delays: list[float] = []
        self.ready_s: list[float] = []
        self.unexpected_exits: list[int] = []

    def start(self):
        self.starts += 1
        path = self.logdir / f"worker-{self.starts:03d}.log"
        f = open(path, "w")
        cmd = [UNLEARNKIT, "worker", "--home", str(self.home), *store_args(self.url), "--worker-id", "w1"]
        p = subprocess.Popen([*cmd, "--log-level", "warning"], stdout=f, stderr=subprocess.STDOUT, env=child_env())
        f.close()
        return p, path

    def wait_ready(self, p, path, deadline: float) -> bool:
        t = time.monotonic()
        while time.monotonic() < deadline and p.poll() is None:
            if "worker.start" in path.read_text(errors="replace"):
                self.ready_s.append(time.monotonic() - t)
                return True
            time.sleep(0.05)
        return False

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            p, path = self.start()
            ready = self.wait_ready(p, path, deadline)
            if not ready and p.poll() is None:
                self.not_ready += 1  # the loop's time ran out during start-up
            elif ready:
                delay = self.rng.uniform(0.5, 4.0)
                self.kill_delays.append(delay)
                end = min(deadline, time.monotonic() + delay)
                while time.monotonic() < end and p.poll() is None:
                    time.sleep(0.02)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                self.kills += 1
            else:
                self.unexpected_exits.append(p.returncode)
            p.wait()


def part_kill(ws: Workspaces, backend: str, args, subjects: list[str]) -> dict:
    import httpx
    from sqlalchemy import func, select

    from unlearnkit.service import workflows
    from unlearnkit.service.db import audit_log, batches, certificates, deletion_requests, model_lines, model_versions

    rng = random.Random(args.seed)
    home, url = ws.fresh("kill", backend)
    svc = service(home, url)
    token, _ = svc.create_key("bench-kill", SCOPES, rate_per_minute=1_000_000)
    svc.register_line("kill", ws.run_id, {"batch": {"max_size": 4, "window_seconds": 1}})
    close(svc)
    logdir = ws.root / f"{backend}-kill-logs"
    logdir.mkdir()
    srv = Server(home, url, logdir)
    headers = {"Authorization": f"Bearer {token}"}
    pool = list(subjects)
    rng.shuffle(pool)
    per = args.kill_submissions // 2
    lists = [pool[:per], pool[per : 2 * per]]
    spread = 0.8 * args.kill_seconds  # submissions spread over the first 80% of the loop
    lock = threading.Lock()
    subs: list[dict] = []
    stop_operator = threading.Event()
    released: set[str] = set()
    operator_errors: list[str] = []

    def submitter(k: int, mine: list[str], seed: int):
        r = random.Random(seed)
        with httpx.Client(base_url=srv.base, headers=headers, timeout=args.submit_timeout) as client:
            for i, subject in enumerate(mine):
                time.sleep(r.uniform(0.2, 2 * spread / max(1, len(mine))))
                rec = {"submitter": k, "key": f"kill-{k}-{i}", "subject": subject, "attempts": []}
                flaky = args.flaky_every > 0 and i % args.flaky_every == args.flaky_every - 1
                rec["flaky"] = flaky
                for attempt in range(2):
                    t = time.perf_counter()
                    try:
                        resp = client.post(
                            "/v1/model-lines/kill/deletion-requests",
                            json={"subjects": [subject]},
                            headers={"Idempotency-Key": rec["key"]},
                            # a client timeout on purpose: the server goes on, the retry meets it
                            timeout=FLAKY_TIMEOUT_S if flaky and attempt == 0 else args.submit_timeout,
                        )
                        status = str(resp.status_code)
                        if resp.status_code in (200, 202):
                            rec["id"] = resp.json()["id"]
                    except (httpx.TimeoutException, httpx.TransportError) as e:
                        status = f"error:{type(e).__name__}"
                    rec["attempts"].append({"status": status, "s": round(time.perf_counter() - t, 3)})
                    if not status.startswith("error:"):
                        break  # only a timeout or a connection error is retried, once
                with lock:
                    subs.append(rec)

    def operator():
        with httpx.Client(base_url=srv.base, headers=headers, timeout=30) as client:
            while not stop_operator.is_set():
                try:
                    held = client.get("/v1/deletion-requests", params={"line": "kill", "state": "held", "limit": 500})
                    for item in held.json().get("items", []):
                        b = item["batch"]
                        if b and b not in released:
                            d = client.post(
                                f"/v1/batches/{b}/decision", json={"decision": "release", "reason": "bench"}
                            )
                            if d.status_code == 200:
                                released.add(b)
                            elif d.status_code != 409:
                                operator_errors.append(f"{d.status_code}: {d.text[:200]}")
                except httpx.HTTPError as e:
                    operator_errors.append(type(e).__name__)
                stop_operator.wait(1.0)

    loop = KillLoop(home, url, logdir, rng)
    final = None
    try:
        op = threading.Thread(target=operator, daemon=True)
        op.start()
        threads = [threading.Thread(target=submitter, args=(k, lst, args.seed + 1 + k)) for k, lst in enumerate(lists)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        loop.run(args.kill_seconds)
        loop_s = time.monotonic() - t0
        for th in threads:
            th.join(timeout=120)
        svc = service(home, url)
        with svc.reader.connect() as c:
            answered_in_loop = sum(1 for r in c.execute(select(deletion_requests.c.state)) if r.state == "answered")
            steps_in_loop = c.execute(
                select(func.count()).select_from(audit_log).where(audit_log.c.actor == "worker")
            ).scalar_one()
        # the final worker: runs until every request is answered (bounded)
        final_log = logdir / "worker-final.log"
        with open(final_log, "w") as f:
            cmd = [UNLEARNKIT, "worker", "--home", str(home), *store_args(url), "--worker-id", "w1"]
            final = subprocess.Popen(
                [*cmd, "--log-level", "warning"], stdout=f, stderr=subprocess.STDOUT, env=child_env()
            )
        wf = workflows.client(svc)
        t1 = time.monotonic()
        drained = False
        while time.monotonic() - t1 < args.drain_timeout:
            with svc.reader.connect() as c:
                states = [r.state for r in c.execute(select(deletion_requests.c.state))]
            statuses = Counter(
                w.status for w in wf.list_workflows(name=workflows.WORKFLOW, load_input=False, load_output=False)
            )
            if states and all(s in TERMINAL for s in states) and set(statuses) <= {"SUCCESS"}:
                drained = True
                break
            if final.poll() is not None:
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - t1
    finally:
        stop_operator.set()
        if final is not None and final.poll() is None:
            final.send_signal(signal.SIGTERM)
            try:
                final.wait(timeout=60)
            except subprocess.TimeoutExpired:
                final.kill()
                final.wait()
        srv.stop()

    try:
        with svc.reader.connect() as c:
            reqs = {r.id: r for r in c.execute(select(deletion_requests))}
            certs = c.execute(select(certificates)).all()
            vers = c.execute(select(model_versions).order_by(model_versions.c.version)).all()
            line = c.execute(select(model_lines)).one()
            bats = c.execute(select(batches)).all()
            issued = [r.payload for r in c.execute(select(audit_log).where(audit_log.c.action == "certificate.issued"))]
            steps_total = c.execute(
                select(func.count()).select_from(audit_log).where(audit_log.c.actor == "worker")
            ).scalar_one()
            issued_for = [
                r.entity_id for r in c.execute(select(audit_log).where(audit_log.c.action == "certificate.issued"))
            ]
        ok, problems, n_entries = audit_ok(svc)
        statuses = Counter(
            w.status for w in wf.list_workflows(name=workflows.WORKFLOW, load_input=False, load_output=False)
        )
        from unlearnkit.service import crypto

        live = [r for r in certs if r.revoked_at is None]
        bad_signatures = sum(bool(crypto.verify_document(r.document, svc.public_key_pem())) for r in live)
    finally:
        close(svc)

    accepted = {s["id"] for s in subs if "id" in s}
    unknown = [s for s in subs if "id" not in s]  # no id came back (both attempts failed, or a 409/4xx)
    answered = {i for i, r in reqs.items() if r.state == "answered"}
    # lost: accepted and missing or unanswered, or stored (the client may not know it) and unanswered
    lost = sorted((accepted - set(reqs)) | {i for i, r in reqs.items() if r.state != "answered"})
    unaccepted_stored = sorted(set(reqs) - accepted)  # stored though the submitter never got its id
    per_request = Counter(r.request_id for r in live)
    promoted_in = Counter(rid for b in bats if b.state == "promoted" for rid in b.request_ids)
    versions_of = {}
    for rid, p in zip(issued_for, issued):
        versions_of.setdefault(rid, set()).add(p.get("version"))
    subj = Counter(p for r in reqs.values() for p in r.subjects)
    duplicated = {
        "requests_with_several_live_certificates": sum(1 for n in per_request.values() if n > 1),
        "requests_in_several_promoted_batches": sum(1 for n in promoted_in.values() if n > 1),
        "requests_answered_in_several_versions": sum(1 for v in versions_of.values() if len(v) > 1),
        "subjects_in_several_requests": sum(1 for n in subj.values() if n > 1),
    }
    chain = [(int(v.version), v.parent_version) for v in vers]
    linear = (
        chain == [(0, None)] + [(k, k - 1) for k in range(1, len(chain))] and line.current_version == len(chain) - 1
    )
    latencies = []
    first_cert = {}
    for r in live:
        first_cert[r.request_id] = min(first_cert.get(r.request_id, r.created_at), r.created_at)
    for rid, at in first_cert.items():
        if rid in reqs:
            latencies.append(
                (datetime.fromisoformat(at) - datetime.fromisoformat(reqs[rid].created_at)).total_seconds()
            )
    attempts = Counter(a["status"] for s in subs for a in s["attempts"])
    retried = [s for s in subs if len(s["attempts"]) > 1]
    return {
        "loop_s": round(loop_s, 1),
        "submissions": len(subs),
        "submission_attempts": dict(attempts),
        "simulated_client_timeouts": sum(1 for s in subs if s.get("flaky")),
        "retried": len(retried),
        "retry_outcomes": dict(Counter(s["attempts"][-1]["status"] for s in retried)),
        "accepted": len(accepted),
        "no_id_returned": len(unknown),
        "no_id_returned_statuses": dict(Counter(s["attempts"][-1]["status"] for s in unknown)),
        "stored_requests": len(reqs),
        "stored_without_accepted_id": len(unaccepted_stored),
        "stored_without_accepted_id_answered": sum(reqs[i].state == "answered" for i in unaccepted_stored),
        "answered_during_loop": answered_in_loop,
        "batch_steps_recorded_during_loop": int(steps_in_loop),
        "batch_steps_recorded": steps_total,
        "answered": len(answered),
        "request_states": dict(Counter(r.state for r in reqs.values())),
        "lost": len(lost),
        "lost_ids": lost[:10],
        "duplicated": sum(duplicated.values()),
        "duplicates": duplicated,
        "certificates_live": len(live),
        "certificates_revoked": len(certs) - len(live),
        "certificate_signatures_bad": bad_signatures,
        "kills": loop.kills,
        "restarts": (loop.starts - 1) + 1,  # every start after the first, plus the final worker
        "worker_starts_in_loop": loop.starts,
        "worker_exits_not_by_kill": loop.unexpected_exits,
        "loop_ended_during_startup": loop.not_ready,
        "worker_startup_s": ms(loop.ready_s),
        "kill_delay_s_mean": round(float(np.mean(loop.kill_delays)), 2) if loop.kill_delays else None,
        "drained": drained,
        "drain_s": round(drain_s, 1),
        "batches": dict(Counter(b.state for b in bats)),
        "held_batches_released": len(released),
        "operator_errors": operator_errors[:5],
        "log_problems": log_problems(logdir, "*.log"),
        "workflows": dict(statuses),
        "versions": len(vers),
        "version_chain_linear": linear,
        "audit_verifies": ok,
        "audit_problems": problems,
        "audit_entries": n_entries,
        "answer_latency_s": {
            "p50": round(pct(latencies, 50), 1) if latencies else None,
            "p99": round(pct(latencies, 99), 1) if latencies else None,
        },
    }


# --------------------------------------------------------------------------- output
def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, dict) and set(v) == {"count", "first"}:
        return str(v["count"])
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v) or "none"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x)}" for k, x in v.items()) or "-"
    return str(v)


def table(title: str, rows: list[tuple], backends: list[str]) -> str:
    lines = [f"### {title}", "", "| | " + " | ".join(backends) + " |", "|:---|" + "---:|" * len(backends)]
    for label, *vals in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + " |")
    return "\n".join(lines)


def report(res: dict) -> str:
    bs = list(res["backends"])
    B = res["backends"]
    out = []
    if all("load" in B[b] for b in bs):
        L = {b: B[b]["load"] for b in bs}
        out.append(
            table(
                f"1. Load on loopback (API only, no worker): {L[bs[0]]['requests']} requests from {L[bs[0]]['clients']} threads",
                [
                    ("submit: accepted / s", *[L[b]["submit"]["accepted_per_s"] for b in bs]),
                    ("submit: p50 ms", *[L[b]["submit"]["p50_ms"] for b in bs]),
                    ("submit: p99 ms", *[L[b]["submit"]["p99_ms"] for b in bs]),
                    ("submit: max ms", *[L[b]["submit"]["max_ms"] for b in bs]),
                    ("submit: p50 ms, first quarter", *[L[b]["submit"]["p50_ms_first_quarter"] for b in bs]),
                    ("submit: p50 ms, last quarter", *[L[b]["submit"]["p50_ms_last_quarter"] for b in bs]),
                    ("submit: statuses", *[L[b]["submit"]["statuses"] for b in bs]),
                    ("status GET: per s", *[L[b]["status_get"]["per_s"] for b in bs]),
                    ("status GET: p50 ms", *[L[b]["status_get"]["p50_ms"] for b in bs]),
                    ("status GET: p99 ms", *[L[b]["status_get"]["p99_ms"] for b in bs]),
                    ("status GET: statuses", *[L[b]["status_get"]["statuses"] for b in bs]),
                    (
                        "stored, seq contiguous",
                        *[
                            f"{L[b]['database_after']['requests_stored']}, {L[b]['database_after']['seq_contiguous']}"
                            for b in bs
                        ],
                    ),
                    ("audit log verifies", *[L[b]["database_after"]["audit_verifies"] for b in bs]),
                ],
                bs,
            )
        )
    if all("amortisation" in B[b] for b in bs):
        A = {b: B[b]["amortisation"] for b in bs}
        rows = []
        for side in SIDES:
            for key, label in (
                ("batches", "batches"),
                ("wall_s", "wall s (median)"),
                ("wall_s_each", "wall s, each repeat"),
                ("unlearn_runs", "unlearn runs"),
                ("reference_retrains", "reference retrains computed"),
                ("distinct_reference_models", "distinct reference models"),
                ("examples_forward", "examples fwd (unlearn + reference)"),
                ("examples_backward", "examples bwd (unlearn + reference)"),
                ("unlearn_examples_forward", "  of which unlearn fwd"),
                ("reference_examples_forward", "  of which reference fwd"),
                ("gate_passed_first_time", "gate passed first time"),
                ("escalations", "escalated (exact retrain)"),
                ("held_then_released", "held, released"),
                ("answered", "requests answered"),
            ):
                rows.append((f"{side.replace('_', ' ')}: {label}", *[A[b][side][key] for b in bs]))
        for key in (
            "wall_s",
            "wall_s_each_repeat",
            "examples_forward",
            "examples_backward",
            "unlearn_runs",
            "reference_retrains",
        ):
            for side in ("one_by_one", "arriving"):
                label = side.replace("_", "-")
                rows.append((f"ratio {label} / batched: {key}", *[A[b][f"ratio_{side}_over_batched"][key] for b in bs]))
        n = A[bs[0]]["batched"]["requests"]
        out.append(table(f"2. Batching amortisation: {n} one-subject requests, one batch vs {n}", rows, bs))
    if all("kill_loop" in B[b] for b in bs):
        K = {b: B[b]["kill_loop"] for b in bs}
        keys = [
            ("loop_s", "loop s"),
            ("submissions", "submissions"),
            ("submission_attempts", "attempt statuses"),
            ("simulated_client_timeouts", "first attempts timed out on purpose"),
            ("retried", "retried once (timeout / connection)"),
            ("retry_outcomes", "retry statuses"),
            ("accepted", "accepted (id returned)"),
            ("no_id_returned", "no id returned"),
            ("stored_requests", "requests stored"),
            ("stored_without_accepted_id", "stored, client got no id"),
            ("answered_during_loop", "answered during the loop"),
            ("batch_steps_recorded_during_loop", "batch steps recorded during the loop"),
            ("answered", "answered at the end"),
            ("lost", "lost"),
            ("duplicated", "duplicated"),
            ("kills", "kills (SIGKILL)"),
            ("restarts", "restarts (incl. the final worker)"),
            ("worker_exits_not_by_kill", "worker exits not by kill"),
            ("batches", "batches"),
            ("held_batches_released", "held batches released"),
            ("workflows", "DBOS workflows"),
            ("versions", "versions (incl. 0)"),
            ("version_chain_linear", "version chain linear"),
            ("audit_verifies", "audit log verifies"),
            ("certificate_signatures_bad", "bad certificate signatures"),
            ("drain_s", "final drain s"),
            ("log_problems", "log lines >= WARNING"),
            ("answer_latency_s", "submit -> certificate s"),
        ]
        out.append(
            table(
                "3. Random kill loop (worker w1 SIGKILLed 0.5-4 s after each start)",
                [(lab, *[K[b][k] for b in bs]) for k, lab in keys],
                bs,
            )
        )
    return "\n\n".join(out)


def markdown(res: dict, tables: str) -> str:
    m = res["machine"]
    v = res["versions"]
    others = res["ran_beside"]
    beside = (
        "nothing else (no other test or benchmark)"
        if not any(others.values())
        else "; ".join(f"{k}: {len(x)} other process(es): " + ", ".join(x[:4]) for k, x in others.items() if x)
    )
    head = [
        "# Deletion-request service: load, batching amortisation, kill loop",
        "",
        f"{res['date']}, {m['cpus']} CPUs, load average before {m['load_before']}, {res['elapsed_s']:.0f} s in all; "
        f"dbos {v['dbos']}, fastapi {v['fastapi']}, sqlalchemy {v['sqlalchemy']}, uvicorn {v['uvicorn']}, "
        f"PostgreSQL {v.get('postgresql_server') or '-'} on 127.0.0.1. Ran beside it: {beside}.",
        "",
        f"Regenerate: `{res['command']}`"
        + (
            " (with `UNLEARNKIT_BENCH_PG_URL` naming a local server's role with CREATEDB)"
            if "postgresql" in res["backends"]
            else ""
        ),
        "",
        "All parts start from copies of one trained digits MLP; every PostgreSQL part gets a fresh database. "
        "Part 1 runs `unlearnkit serve --no-worker` (API only: no unlearning competes for the CPU), each request "
        "one example id with its own Idempotency-Key, latency measured by the client over keep-alive loopback "
        "connections. Part 2 answers the same requests in-process through the workflow's control flow, "
        "batched vs one by one, from fresh workspaces (cold reference cache); examples counted are the unlearn "
        "runs' and the reference retrains actually computed (an escalation reuses the cached reference). "
        "Part 3 SIGKILLs a real `unlearnkit worker` while 2 threads submit over HTTP (every third first attempt "
        "times out on purpose after 2 ms and is retried once with the same Idempotency-Key; a 409 answers a retry "
        "whose first attempt is still in flight), then a final worker drains.",
        "",
        "",
    ]
    return "\n".join(head) + tables + "\n\n" + "\n".join(notes(res)) + "\n"


def notes(res: dict) -> list[str]:
    """Facts the tables imply, computed from this run's figures."""
    out = ["### Notes", ""]
    for b, r in res["backends"].items():
        a = r.get("amortisation")
        if a:
            o, bt = a["one_by_one"], a["batched"]
            out.append(
                f"- {b}, amortisation: one by one ran {o['unlearn_runs']} unlearn runs and "
                f"{o['reference_retrains']} reference retrains ({o['distinct_reference_models']} distinct reference "
                f"model(s)) against {bt['unlearn_runs']} and {bt['reference_retrains']} batched; reference retrains are "
                f"{100 * o['reference_examples_forward'] / max(1, o['examples_forward']):.0f}% of the examples computed. "
                f"Wall ratio per repeat: {fmt(a['ratio_one_by_one_over_batched']['wall_s_each_repeat'])}."
            )
            ar = a["arriving"]
            out.append(
                f"- {b}, amortisation, arriving one at a time (each answered before the next is submitted): "
                f"{ar['unlearn_runs']} unlearn runs and {ar['reference_retrains']} reference retrains "
                f"({ar['distinct_reference_models']} distinct); ratio to batched: wall "
                f"{a['ratio_arriving_over_batched']['wall_s']}x, examples {a['ratio_arriving_over_batched']['examples_forward']}x."
            )
        L = r.get("load")
        if L:
            sb = L["submit"]
            out.append(
                f"- {b}, load: submission p50 {sb['p50_ms_first_quarter']} ms over the first quarter of the requests, "
                f"{sb['p50_ms_last_quarter']} ms over the last; {L['database_after']['requests_stored']} stored, "
                f"seq contiguous: {L['database_after']['seq_contiguous']}, log lines >= WARNING: {L['log_problems']['count']}."
            )
        K = r.get("kill_loop")
        if K:
            out.append(
                f"- {b}, kill loop: {K['kills']} kills, {K['answered_during_loop']} request(s) answered during the loop "
                f"({K['batch_steps_recorded_during_loop']} batch steps recorded), all {K['answered']} of "
                f"{K['stored_requests']} answered after a {K['drain_s']} s drain; {K['retried']} retries "
                f"({fmt(K['retry_outcomes'])}); lost {K['lost']}, duplicated {K['duplicated']}; worker start-up "
                f"p50 {K['worker_startup_s']['p50_ms']} ms."
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("UNLEARNKIT_BENCH_PG_URL"),
        help="postgresql+psycopg:// URL of a server whose role may CREATE DATABASE (default $UNLEARNKIT_BENCH_PG_URL)",
    )
    ap.add_argument(
        "--out", default="benchmarks/results/service.json", help="JSON results; the .md is written beside it"
    )
    ap.add_argument("--parts", default="load,amortise,kill", help="comma-separated: load, amortise, kill")
    ap.add_argument("--requests", type=int, default=400, help="part 1: deletion requests (distinct example ids)")
    ap.add_argument("--clients", type=int, default=8, help="part 1: concurrent client threads")
    ap.add_argument("--amortise", type=int, default=8, help="part 2: one-subject requests, batched vs one by one")
    ap.add_argument(
        "--amortise-repeats", type=int, default=3, help="part 2: repeats (fresh workspaces; order alternates)"
    )
    ap.add_argument("--kill-seconds", type=float, default=90.0, help="part 3: length of the kill loop")
    ap.add_argument("--kill-submissions", type=int, default=16, help="part 3: submissions in all (2 submitters)")
    ap.add_argument("--submit-timeout", type=float, default=5.0, help="part 3: client timeout before the one retry")
    ap.add_argument(
        "--flaky-every",
        type=int,
        default=3,
        help=f"part 3: every N-th submission's first attempt times out on purpose ({FLAKY_TIMEOUT_S} s) and is retried; 0: never",
    )
    ap.add_argument("--drain-timeout", type=float, default=240.0, help="part 3: the final worker's bound")
    ap.add_argument("--seed", type=int, default=0, help="kill moments and submission times")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspaces and databases")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(backends) - {"sqlite", "postgresql"}:
        ap.error("--backends: sqlite and/or postgresql")
    if set(parts) - {"load", "amortise", "kill"}:
        ap.error("--parts: load, amortise, kill")
    if "postgresql" in backends and not args.pg_url:
        ap.error("postgresql needs --pg-url or $UNLEARNKIT_BENCH_PG_URL")
    if not 1 <= args.requests <= 1000 or not 1 <= args.clients <= 64 or not 2 <= args.amortise <= 32:
        ap.error("bounds: --requests 1..1000, --clients 1..64, --amortise 2..32")
    if not 1 <= args.amortise_repeats <= 5:
        ap.error("bounds: --amortise-repeats 1..5")
    if not 5 <= args.kill_seconds <= 600 or not 2 <= args.kill_submissions <= 60:
        ap.error("bounds: --kill-seconds 5..600, --kill-submissions 2..60")

    import dbos
    import fastapi
    import httpx
    import sqlalchemy
    import torch
    import uvicorn

    import unlearnkit

    started = time.monotonic()
    command = "python benchmarks/service.py " + " ".join(
        a if not a.startswith("postgresql") else "<--pg-url>" for a in sys.argv[1:]
    )
    res: dict = {
        "command": command.strip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
            "platform": sys.platform,
        },
        "versions": {
            "unlearnkit": unlearnkit.__version__,
            "python": sys.version.split()[0],
            "dbos": dbos.__version__ if hasattr(dbos, "__version__") else _dist("dbos"),
            "fastapi": fastapi.__version__,
            "sqlalchemy": sqlalchemy.__version__,
            "uvicorn": uvicorn.__version__,
            "httpx": httpx.__version__,
            "torch": torch.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("pg_url", "keep")},
        "pg_url": safe(args.pg_url) if "postgresql" in backends else None,
        "ran_beside": {"at_start": others_running()},
        "backends": {},
    }
    if "postgresql" in backends:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        e = create_engine(args.pg_url, poolclass=NullPool)
        with e.connect() as c:
            res["versions"]["postgresql_server"] = c.execute(text("SHOW server_version")).scalar_one()
        e.dispose()
        res["versions"]["psycopg"] = _dist("psycopg")
    root = Path(tempfile.mkdtemp(prefix="ukbench-service-"))
    log(f"workspaces under {root}; training the template model")
    ws = Workspaces(root, args.pg_url)
    try:
        example_ids = run_cli("data", "ids", "digits", "--split", "train").split()
        subjects = sorted(set(run_cli("data", "ids", "digits", "--subjects", "--split", "train").split()))
        rng = random.Random(args.seed)
        rng.shuffle(example_ids)
        for b in backends:
            out = res["backends"].setdefault(b, {})
            if "load" in parts:
                log(f"{b}: load ({args.requests} requests, {args.clients} clients)")
                out["load"] = part_load(ws, b, args, example_ids)
            if "amortise" in parts:
                log(f"{b}: batching amortisation ({args.amortise} requests)")
                out["amortisation"] = part_amortise(ws, b, args, subjects)
            if "kill" in parts:
                log(f"{b}: kill loop ({args.kill_seconds:.0f} s)")
                out["kill_loop"] = part_kill(ws, b, args, subjects)
            log(f"{b}: done")
    finally:
        if not args.keep:
            ws.drop()
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root} and databases {ws.databases}")
    res["ran_beside"]["at_end"] = others_running()
    res["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    tables = report(res)
    print(tables)
    print()
    for b in res["backends"]:
        a = res["backends"][b].get("amortisation")
        if a:
            for side in ("one_by_one", "arriving"):
                r = a[f"ratio_{side}_over_batched"]
                print(f"{b}: {side} / batched: wall {r['wall_s']}x, examples forward {r['examples_forward']}x")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=1) + "\n")
    out_path.with_suffix(".md").write_text(markdown(res, tables))
    log(f"wrote {out_path} and {out_path.with_suffix('.md')} ({res['elapsed_s']:.0f} s)")


def _dist(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
