"""What the comparator's end-to-end tests (tests/test_ui_e2e.py) share: Debian's Chromium
through Playwright for Python (never `playwright install`), an `unlearnkit ui` server in a
subprocess on a free 127.0.0.1 port, a console watcher that fails a test on any page error,
and the attack maths recomputed from the API's features with the project's own functions.

Without Playwright or the browser the tests skip, unless ``UNLEARNKIT_REQUIRE_BROWSER`` is set
(CI sets it): then they fail. ``UNLEARNKIT_CHROMIUM`` overrides the browser's path."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from unlearnkit.evaluation.comparator import attack_scores

CHROMIUM = os.environ.get("UNLEARNKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REQUIRE_BROWSER = bool(os.environ.get("UNLEARNKIT_REQUIRE_BROWSER"))
#: every wait in these tests is bounded by this (ms); generous for 2 shared cores
WAIT_MS = 30_000


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=WAIT_MS)


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`unlearnkit ui --home HOME --port <free> --no-open` in a subprocess; stopped by its pid."""

    def __init__(self, home: Path, timeout: float = 60.0):
        self.home = Path(home)
        self.log = self.home.parent / f"{self.home.name}-ui.log"
        last = ""
        for _ in range(3):  # another process may take the free port between the probe and the bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}/"
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "unlearnkit",
                        "ui",
                        "--home",
                        str(self.home),
                        "--port",
                        str(self.port),
                        "--no-open",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                self._wait(timeout)
                return
            except RuntimeError as e:
                last = str(e)
                self.stop()
                if "cannot listen" not in last:
                    break
        raise RuntimeError(last)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unlearnkit ui exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "api/v1/workspace", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"unlearnkit ui did not answer within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path> as JSON (raises on a non-2xx answer)."""
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.url}api/v1/{path}" + (f"?{q}" if q else ""), timeout=60) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this pid only
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


# --------------------------------------------------------------------------- the page's console
class Console:
    """Every console error and uncaught exception of a page. ``check()`` fails on any but the
    network errors a test expects (``Failed to load resource`` of an API call that answers a
    problem: ``allow={"/api/v1/pair": 422}``)."""

    RESOURCE = "Failed to load resource: the server responded with a status of "

    def __init__(self, page):
        self.errors: list[tuple[str, str, str]] = []  # (kind, text, url)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(("pageerror", f"{e.name}: {e.message}\n{e.stack}", "")))

    def _console(self, msg) -> None:
        if msg.type in ("error", "assert"):
            self.errors.append((msg.type, msg.text, (msg.location or {}).get("url", "")))

    def unexpected(self, allow: dict[str, int] | None = None) -> list:
        allow = allow or {}
        out = []
        for kind, text, url in self.errors:
            path = urllib.parse.urlsplit(url).path
            if kind == "error" and text.startswith(self.RESOURCE) and path in allow:
                if text.startswith(f"{self.RESOURCE}{allow[path]} "):
                    continue
            out.append((kind, text, url))
        return out

    def check(self, allow: dict[str, int] | None = None) -> None:
        bad = self.unexpected(allow)
        assert not bad, "console errors in the page:\n" + "\n".join(f"[{k}] {t} ({u})" for k, t, u in bad)


# --------------------------------------------------------------------------- files
def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG; asserts the signature and an IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def data_url_bytes(url: str) -> bytes:
    head, _, body = url.partition(",")
    assert head == "data:image/png;base64", head[:60]
    return base64.b64decode(body)


# --------------------------------------------------------------------------- the attack maths
def grid(lo: float, hi: float, bins: int) -> np.ndarray:
    return np.linspace(lo, hi, bins)


def _clipped(values, lo: float, hi: float) -> np.ndarray:
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    return np.clip(v[np.isfinite(v)], lo, hi)


def feature_sets(attack: dict, model: str, feature: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(forget values, holdout values, range) of one model and feature, clipped as the page does."""
    lo, hi = attack["ranges"][feature]
    return (
        _clipped(attack["forget"][model][feature], lo, hi),
        _clipped(attack["holdout"][model][feature], lo, hi),
        (lo, hi),
    )


def rule(forget: np.ndarray, holdout: np.ndarray, t: float, direction: str) -> dict:
    """The threshold rule in member terms (members = forget), its attack score from
    :func:`unlearnkit.evaluation.comparator.attack_scores` ("above": forget are the positives
    of ``value >= t``; "below": the holdout are, i.e. members are flagged by ``value < t``)."""
    if direction == "above":
        score = float(attack_scores(forget, holdout, np.array([t]))[0])
        tp, fp = int((forget >= t).sum()), int((holdout >= t).sum())
    else:
        score = float(attack_scores(holdout, forget, np.array([t]))[0])
        tp, fp = int((forget < t).sum()), int((holdout < t).sum())
    nf, nh = len(forget), len(holdout)
    return {
        "threshold": float(t),
        "direction": direction,
        "tpr": tp / nf,
        "fpr": fp / nh,
        "accuracy": (tp + nh - fp) / (nf + nh),
        "attack": score,
        "fq": 1.0 - score,
    }


def custom(attack: dict, model: str, feature: str, t: float) -> dict:
    """The custom strategy at t: the direction with the larger attack score ("above" on a tie)."""
    f, h, _ = feature_sets(attack, model, feature)
    above, below = rule(f, h, t, "above"), rule(f, h, t, "below")
    return below if below["attack"] > above["attack"] else above


def sweep(attack: dict, model: str, feature: str) -> list[dict]:
    """Every grid threshold, "above" then "below"."""
    f, h, (lo, hi) = feature_sets(attack, model, feature)
    g = grid(lo, hi, attack["bins"])
    return [rule(f, h, t, d) for d in ("above", "below") for t in g]


def best(points: list[dict], key: str) -> dict:
    out = points[0]
    for p in points[1:]:
        if p[key] > out[key]:
            out = p
    return out


def privacy(attack: dict, model: str) -> float:
    """1 - the largest attack score over every feature, direction and grid threshold."""
    worst = 0.0
    for feature in attack["features"]:
        f, h, (lo, hi) = feature_sets(attack, model, feature)
        g = grid(lo, hi, attack["bins"])
        worst = max(worst, float(attack_scores(f, h, g).max()), float(attack_scores(h, f, g).max()))
    return min(max(1.0 - worst, 0.0), 1.0)
