"""The comparator end to end: `unlearnkit ui` in a subprocess, its page in Debian's headless
Chromium through Playwright (tests/ui_e2e_support.py), over tiny real workspaces built once
for the module: digits (a finetune run forgetting class 3 with its reference, a run whose
artifact file was deleted, a linear model of another task), digits with one deletion request
answered by the service, a tiny language model with an NPO run, and an empty workspace.

Every view opens without console errors; a brush in embedding A selects exactly the points
inside the rectangle and embedding B, the attack view and the instance panel show the same
ids; the threshold slider's scores equal the attack maths recomputed here from the API's
features; the URL hash reproduces a view; PNG and SVG exports are valid files; bad input is a
message in the page. ``UNLEARNKIT_SCREENSHOTS=<dir>`` keeps a screenshot of every view
(docs/img/comparator/ holds the committed ones)."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import ui_e2e_support as support
from ui_e2e_support import WAIT_MS, Console, Server

pytest.importorskip("fastapi")
_missing = support.browser_missing()
if _missing:
    if support.REQUIRE_BROWSER:
        raise RuntimeError(f"UNLEARNKIT_REQUIRE_BROWSER is set but {_missing}")
    pytest.skip(_missing, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from unlearnkit.cli import app as cli_app  # noqa: E402
from unlearnkit.orchestration.experiment import Workspace  # noqa: E402

pytestmark = pytest.mark.timeout(300)
expect.set_options(timeout=WAIT_MS)

VIEWPORT = {"width": 1280, "height": 900}
IDLE = "() => window.__unlearnkit !== undefined && document.querySelector('[data-testid=loading]') === null"
U = "window.__unlearnkit"


def _cli(*args: str) -> dict:
    res = CliRunner().invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------- workspaces and servers
@pytest.fixture(scope="module")
def digits(trained, tmp_path_factory):
    """The digits workspace: ``a`` finetune forgetting class 3 (evaluated: its reference is
    trained), ``gone`` finetune forgetting a random 10% whose artifact file was then deleted,
    ``other`` a linear model (another task). Served by `unlearnkit ui`: (server, ids)."""
    src, train_id = trained
    home = tmp_path_factory.mktemp("e2e-digits") / "home"
    shutil.copytree(src, home)
    h = str(home)
    a = _cli("unlearn", "--home", h, "--from", train_id, "--method", "finetune", "--scenario", "class:3", "--evaluate")
    gone = _cli("unlearn", "--home", h, "--from", train_id, "--method", "finetune", "--scenario", "random:0.1")
    other = _cli("train", "--home", h, "--model", "linear", "--epochs", "1")
    ws = Workspace.open(home, mode="existing")
    ws.artifacts.path(ws.store.get(gone["run_id"]).artifact).unlink()
    server = Server(home)  # no view computed beforehand: the page's concurrent requests on a cold cache
    yield server, {"train": train_id, "a": a["run_id"], "gone": gone["run_id"], "other": other["run_id"]}
    server.stop()


@pytest.fixture(scope="module")
def service(trained, tmp_path_factory):
    """A digits workspace whose service answered one request naming a person: (server, request id)."""
    from service_support import drain, make_service

    src, run = trained
    home = tmp_path_factory.mktemp("e2e-service") / "home"
    shutil.copytree(src, home)
    svc, q = make_service(home)
    svc.register_line("digits", run)
    person = sorted(set(map(str, svc._task(run).split.train.subject_ids)))[0]
    req = svc.submit("digits", subjects=[person]).body
    assert drain(svc, q) == ["promoted"]
    svc.engine.dispose()
    server = Server(home)
    yield server, req["id"]
    server.stop()


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny Llama on generated profiles (the LM command-line tests' model, fewer epochs) and
    one NPO run evaluated against its reference: (server, NPO run id)."""
    pytest.importorskip("transformers")
    from test_lm_cli import TINY

    args = list(TINY)
    args[args.index("--epochs") + 1] = "10"  # the views need a model, not a good one
    home = tmp_path_factory.mktemp("e2e-lm") / "home"
    run = _cli("train", "--home", str(home), *args)["run_id"]
    npo = _cli("unlearn", "--home", str(home), "--from", run, "--method", "npo", "--evaluate")["run_id"]
    server = Server(home)
    yield server, npo
    server.stop()


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e-empty") / "home"
    Workspace.open(home, mode="rw")
    server = Server(home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = support.launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: $UNLEARNKIT_SCREENSHOTS, else a temporary folder."""
    d = Path(os.environ.get("UNLEARNKIT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def open_page(browser):
    """open_page(server, hash="") -> (page, console): a fresh context, the page loaded and idle."""
    contexts = []

    def _open(server: Server, hash: str = ""):
        ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        ctx.set_default_timeout(WAIT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        console = Console(page)
        page.goto(server.url + hash, timeout=WAIT_MS)
        idle(page)
        return page, console

    yield _open
    for c in contexts:
        c.close()


def idle(page) -> None:
    page.wait_for_function(IDLE, timeout=WAIT_MS)


def shot(page, shots: Path, name: str, height: int = 1800) -> None:
    """A screenshot of the page as it is (header and view, at most ``height`` px), as a
    256-colour PNG (under 200 KB; the UI's colours are flat)."""
    from io import BytesIO

    from PIL import Image

    page.evaluate("window.scrollTo(0, 0)")
    height = min(page.evaluate("document.documentElement.scrollHeight"), height)
    png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    img = (
        Image.open(BytesIO(png))
        .convert("RGB")
        .quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    )
    img.save(shots / f"{name}.png", optimize=True)


def pair_hash(view: str, a: str, b: str | None = None) -> str:
    from urllib.parse import quote

    return f"#view={view}&a={quote(a, safe='')}&b={quote(b or f'reference:{a}', safe='')}"


def state(page) -> dict:
    return page.evaluate(
        f"(() => {{ const s = {U}.state; return {{a: s.a, b: s.b, view: s.view, threshold: s.threshold, feature: s.feature,"
        " strategy: s.strategy, projection: s.projection, request: s.request, question: s.question,"
        " selection: [...s.selection].sort()}; })()"
    )


def wait_cloud(page, name: str) -> None:
    page.wait_for_function(
        f"(n) => {U}.clouds().includes(n) && {U}.pointsOnScreen(n).length > 0", arg=name, timeout=WAIT_MS
    )


def view_text(page) -> str:
    return page.get_by_test_id("view").inner_text()


# --------------------------------------------------------------------------- every view
def test_the_page_loads_without_console_errors(digits, open_page):
    server, _ = digits
    page, console = open_page(server)
    expect(page.get_by_test_id("runs-table")).to_be_visible()
    page.wait_for_timeout(1000)  # what the browser asks for after the load (an icon) logs late
    console.check()


def test_runs_view(digits, open_page, shots):
    server, ids = digits
    page, console = open_page(server)
    rows = page.get_by_test_id("run-row")
    expect(rows).to_have_count(4)
    assert {rows.nth(i).get_attribute("data-id") for i in range(4)} == set(ids.values())
    assert page.locator(f"[data-testid=run-row][data-id='{ids['a']}']").get_attribute("data-kind") == "unlearn"
    # the run without its file is marked
    assert "missing" in page.locator(f"[data-testid=run-row][data-id='{ids['gone']}']").get_attribute("class")
    expect(page.get_by_test_id("runs-count")).to_have_text("4 of 4 runs")
    # filters and sorting
    page.get_by_test_id("filter-scenario").select_option(label="class 3")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-id") == ids["a"]
    page.get_by_test_id("filter-scenario").select_option(value="")
    expect(rows).to_have_count(4)
    page.get_by_test_id("sort-acc_test").click()
    metrics = {r["id"]: r["metrics"].get("acc_test") for r in server.api("runs")["runs"]}
    order = [rows.nth(i).get_attribute("data-id") for i in range(4)]
    shown = [metrics[i] for i in order if metrics[i] is not None]
    assert shown == sorted(shown, reverse=True) and len(shown) >= 2
    assert page.get_by_test_id("sort-acc_test").get_attribute("data-goal") in ("max", "reference")
    shot(page, shots, "runs")
    # "vs reference" opens the classifier view of the run and its reference
    page.locator(f"[data-testid=run-row][data-id='{ids['a']}'] [data-testid=compare-ref]").click()
    idle(page)
    s = state(page)
    assert (s["a"], s["b"], s["view"]) == (ids["a"], f"reference:{ids['a']}", "classifier")
    expect(page.get_by_test_id("pair-task")).to_contain_text("digits")
    console.check()


def test_classifier_view(digits, open_page, shots):
    server, ids = digits
    page, console = open_page(server, pair_hash("classifier", ids["a"]))
    wait_cloud(page, "embedding-a")
    wait_cloud(page, "embedding-b")
    expect(page.get_by_test_id("svg-cka")).to_be_visible()
    classes = server.api("classifier/classes", a=ids["a"])
    # the prediction matrices draw the API's counts (forget split: class 3 only)
    for model in ("a", "b"):
        m = np.array(classes["matrix"][model]["forget"])
        cells = page.locator(f"[data-testid=svg-matrix-{model}] [data-testid=matrix-cell]")
        drawn = {
            (int(c.get_attribute("data-true")), int(c.get_attribute("data-pred"))): int(c.get_attribute("data-count"))
            for c in cells.all()
        }
        assert {k: v for k, v in drawn.items() if v} == {(i, j): int(m[i, j]) for i, j in zip(*np.nonzero(m))}
    emb = server.api("classifier/embeddings", a=ids["a"], b=f"reference:{ids['a']}")
    assert int(page.get_by_test_id("canvas-embedding-a").get_attribute("data-points")) == len(emb["sample"]["ids"])
    # the CKA chart's legend: every series, each label inside the chart
    cka = page.get_by_test_id("svg-cka")
    labels = cka.get_by_test_id("legend").locator("text")
    expect(labels).to_have_count(5)
    assert [t.text_content() for t in labels.all()] == [
        "A vs original",
        "A vs reference",
        "B vs original",
        "B vs reference",
        "A vs B",
    ]
    chart = cka.bounding_box()
    for t in labels.all():
        bb = t.bounding_box()
        assert chart["x"] <= bb["x"] and bb["x"] + bb["width"] <= chart["x"] + chart["width"], t.text_content()
        assert chart["y"] <= bb["y"] and bb["y"] + bb["height"] <= chart["y"] + chart["height"], t.text_content()
    # a matrix cell selects the sampled instances of that true and predicted class: A's most
    # common mistake on the forgotten class
    row = np.array(classes["matrix"]["a"]["forget"][3])
    row[3] = -1
    j = int(np.argmax(row))
    sample = zip(emb["sample"]["ids"], emb["sample"]["split"], emb["sample"]["label"], emb["pred"]["a"])
    want = sorted(i for i, sp, lab, p in sample if sp == "forget" and lab == 3 and p == j)
    assert want
    page.locator(f"[data-testid=svg-matrix-a] [data-testid=matrix-cell][data-true='3'][data-pred='{j}']").click()
    page.wait_for_function(f"(n) => {U}.state.selection.size === n", arg=len(want), timeout=WAIT_MS)
    assert state(page)["selection"] == want
    assert sorted(page.evaluate(f"{U}.highlighted('embedding-b')")) == want
    expect(page.get_by_test_id("selection-count")).to_have_attribute("data-count", str(len(want)))
    console.check()


def test_classifier_view_on_a_cold_cache(digits, open_page):
    """The page asks for the embeddings and the CKA of a pair at once; on a pair whose views are
    not cached yet both are computed concurrently (A against its original here)."""
    server, ids = digits
    page, console = open_page(server, pair_hash("classifier", ids["a"], f"original:{ids['a']}"))
    wait_cloud(page, "embedding-a")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=svg-cka], [data-testid=cka] [data-testid=error]') !== null",
        timeout=WAIT_MS,
    )
    errors = page.get_by_test_id("view").get_by_test_id("error")
    expect(errors).to_have_count(0)
    expect(page.get_by_test_id("svg-cka")).to_be_visible()
    console.check()


def test_brush_in_embedding_a_selects_the_points_inside_and_links_every_view(digits, open_page, shots):
    server, ids = digits
    a, b = ids["a"], f"reference:{ids['a']}"
    page, console = open_page(server, pair_hash("classifier", a))
    wait_cloud(page, "embedding-a")
    wait_cloud(page, "embedding-b")
    canvas = page.get_by_test_id("canvas-embedding-a")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    pts = page.evaluate(f"{U}.pointsOnScreen('embedding-a')")
    emb = server.api("classifier/embeddings", a=a, b=b)
    split = dict(zip(emb["sample"]["ids"], emb["sample"]["split"]))
    x0, y0, x1, y1 = _rectangle(pts, split, box)
    inside = {p["id"] for p in pts if x0 < p["x"] < x1 and y0 < p["y"] < y1}
    assert 5 <= len(inside) <= 24 and any(split[i] == "forget" for i in inside)

    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => {U}.state.selection.size > 0", timeout=WAIT_MS)
    assert state(page)["selection"] == sorted(inside)
    assert sorted(page.evaluate(f"{U}.highlighted('embedding-a')")) == sorted(inside)
    assert sorted(page.evaluate(f"{U}.highlighted('embedding-b')")) == sorted(inside)
    assert {p["id"] for p in page.evaluate(f"{U}.pointsOnScreen('embedding-b')") if p["selected"]} == inside
    _assert_panel(page, server, a, b, inside)
    shot(page, shots, "classifier")

    # the attack view highlights the same ids (those of the forget set and the holdout)
    page.get_by_test_id("tab-attack").click()
    wait_cloud(page, "attack-a")
    att = server.api("attack", a=a, b=b)
    members = inside & (set(att["forget"]["ids"]) | set(att["holdout"]["ids"]))
    assert members and state(page)["selection"] == sorted(inside)
    assert sorted(page.evaluate(f"{U}.highlighted('attack-a')")) == sorted(members)
    assert sorted(page.evaluate(f"{U}.highlighted('attack-b')")) == sorted(members)
    _assert_panel(page, server, a, b, inside)
    # and back: the selection survives the round trip
    page.get_by_test_id("tab-classifier").click()
    wait_cloud(page, "embedding-b")
    assert sorted(page.evaluate(f"{U}.highlighted('embedding-b')")) == sorted(inside)
    console.check()


def _rectangle(pts: list[dict], split: dict, box: dict) -> tuple[int, int, int, int]:
    """An integer rectangle in the canvas around a forget-set point holding 5..24 points, no
    point within 1.5 px of an edge (so that which side it falls on is not a rounding question)."""
    xs = np.array([p["x"] for p in pts])
    ys = np.array([p["y"] for p in pts])
    cx, cy = np.median(xs), np.median(ys)
    forget = sorted(
        (p for p in pts if split.get(p["id"]) == "forget"), key=lambda p: (p["x"] - cx) ** 2 + (p["y"] - cy) ** 2
    )
    for centre in forget[:40]:
        for half in range(6, 60, 2):
            x0, x1 = int(centre["x"] - half), int(centre["x"] + half)
            y0, y1 = int(centre["y"] - half), int(centre["y"] + half)
            x0, x1 = _clear_edge(xs, x0, -1), _clear_edge(xs, x1, +1)
            y0, y1 = _clear_edge(ys, y0, -1), _clear_edge(ys, y1, +1)
            if (
                x0 < box["x"] + 2
                or y0 < box["y"] + 2
                or x1 > box["x"] + box["width"] - 2
                or y1 > box["y"] + box["height"] - 2
            ):
                break
            n = int(((xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)).sum())
            if n > 24:
                break
            if n >= 5:
                return x0, y0, x1, y1
    raise AssertionError("no rectangle of 5..24 points around a forget-set point")


def _clear_edge(v: np.ndarray, edge: int, step: int) -> int:
    for _ in range(20):
        if not (np.abs(v - edge) < 1.5).any():
            return edge
        edge += step
    return edge


def _assert_panel(page, server: Server, a: str, b: str, ids: set[str]) -> None:
    """The instance panel lists exactly these ids (sorted), with the API's predictions."""
    panel = page.get_by_test_id("instance-panel")
    expect(panel.get_by_test_id("selection-count")).to_have_attribute("data-count", str(len(ids)))
    rows = panel.get_by_test_id("instance-row")
    expect(rows).to_have_count(len(ids))
    assert [r.get_attribute("data-id") for r in rows.all()] == sorted(ids)
    api = {r["id"]: r for r in server.api("classifier/instances", a=a, b=b, ids=",".join(sorted(ids)))["rows"]}
    for r in rows.all():
        want = api[r.get_attribute("data-id")]
        assert r.get_attribute("data-split") == want["split"]
        expect(r.get_by_test_id("instance-image")).to_have_count(1)
        for m in ("a", "b"):
            pred = r.get_by_test_id(f"instance-{m}").locator("[data-pred]")
            assert int(pred.get_attribute("data-pred")) == want[m]["pred"]
            loss = float(r.get_by_test_id(f"instance-{m}").locator("[data-loss]").get_attribute("data-loss"))
            assert loss == pytest.approx(want[m]["loss"], rel=1e-9, abs=1e-12)


def _scores(page, model: str) -> dict:
    out = {}
    for key in ("threshold", "tpr", "fpr", "accuracy", "fq", "attack", "privacy"):
        out[key] = float(page.get_by_test_id(f"score-{model}-{key}").get_attribute("data-value"))
    out["direction"] = page.get_by_test_id(f"score-{model}-direction").get_attribute("data-value")
    return out


def _assert_scores(page, want: dict, privacy: float, model: str) -> None:
    got = _scores(page, model)
    assert got["direction"] == want["direction"], (model, got, want)
    for key in ("threshold", "tpr", "fpr", "accuracy", "fq", "attack"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), (model, key, got, want)
    assert got["privacy"] == pytest.approx(privacy, abs=1e-12), (model, got["privacy"], privacy)


def _set_slider(page, index: int) -> None:
    page.get_by_test_id("threshold-slider").fill(str(index))
    page.wait_for_function(
        "(i) => document.querySelector('[data-testid=threshold-slider]').value === String(i)",
        arg=index,
        timeout=WAIT_MS,
    )


def test_threshold_slider_scores_follow_the_attack_maths(digits, open_page, shots):
    server, ids = digits
    a, b = ids["a"], f"reference:{ids['a']}"
    page, console = open_page(server, pair_hash("attack", a))
    slider = page.get_by_test_id("threshold-slider")
    expect(slider).to_be_visible()
    att = server.api("attack", a=a, b=b)
    assert att["features"] == ["entropy", "confidence", "loss"] and att["bins"] == 201
    priv = {m: support.privacy(att, m) for m in ("a", "b")}
    lo, hi = att["ranges"]["entropy"]
    g = support.grid(lo, hi, att["bins"])
    assert (float(slider.get_attribute("data-min")), float(slider.get_attribute("data-max"))) == (lo, hi)
    # the default: the middle of the grid
    for m in ("a", "b"):
        _assert_scores(page, support.custom(att, m, "entropy", g[100]), priv[m], m)
    before = _scores(page, "a")["attack"]
    # clicks on the slider's track (where they land is read back from the slider), then exact
    # grid indices; at least one of them changes A's attack score as the maths says
    seen = []
    for where in (0.2, 0.75, 30, 140):
        if isinstance(where, float):
            bb = slider.bounding_box()
            page.mouse.click(bb["x"] + bb["width"] * where, bb["y"] + bb["height"] / 2)
            page.wait_for_function(
                "() => document.querySelector('[data-testid=threshold-slider]').value !== '100'", timeout=WAIT_MS
            )
            i = int(page.get_by_test_id("threshold-slider").input_value())
            assert (i < 100) == (where < 0.5)
        else:
            i = where
            _set_slider(page, i)
        seen.append(support.custom(att, "a", "entropy", g[i])["attack"])
        assert float(page.get_by_test_id("threshold-value").get_attribute("data-value")) == pytest.approx(
            g[i], abs=1e-12
        )
        assert float(
            page.locator("[data-testid=svg-attack-hist-a] [data-testid=threshold-line]").get_attribute("data-threshold")
        ) == pytest.approx(g[i], abs=1e-12)
        for m in ("a", "b"):
            _assert_scores(page, support.custom(att, m, "entropy", g[i]), priv[m], m)
        assert state(page)["threshold"] == pytest.approx(g[i], abs=1e-12)
    assert any(x != before for x in seen), "no threshold tried changes the score: the test workspace is too small"
    assert _scores(page, "a")["attack"] == seen[-1] != before  # the displayed score moved with the slider
    shot(page, shots, "attack")

    # the strategies
    page.get_by_test_id("strategy-max-attack").click()
    expect(page.get_by_test_id("strategy-max-attack")).to_have_attribute("aria-pressed", "true")
    for m in ("a", "b"):
        _assert_scores(page, support.best(support.sweep(att, m, "entropy"), "attack"), priv[m], m)
    page.get_by_test_id("strategy-max-success").click()
    for m in ("a", "b"):
        _assert_scores(page, support.best(support.sweep(att, m, "entropy"), "accuracy"), priv[m], m)
    page.get_by_test_id("strategy-common").click()
    sa, sb = support.sweep(att, "a", "entropy"), support.sweep(att, "b", "entropy")
    k = int(np.argmax([p["attack"] + q["attack"] for p, q in zip(sa, sb)]))  # first maximum, "above" first
    _assert_scores(page, sa[k], priv["a"], "a")
    _assert_scores(page, sb[k], priv["b"], "b")
    assert _scores(page, "a")["threshold"] == _scores(page, "b")["threshold"]

    # another feature, its own range; the slider goes back to the custom strategy
    page.get_by_test_id("attack-feature").select_option("loss")
    expect(page.get_by_test_id("threshold-slider")).to_have_attribute("data-max", "10")
    _set_slider(page, 20)
    expect(page.get_by_test_id("strategy-custom")).to_have_attribute("aria-pressed", "true")
    gl = support.grid(*att["ranges"]["loss"], att["bins"])
    for m in ("a", "b"):
        _assert_scores(page, support.custom(att, m, "loss", gl[20]), priv[m], m)
    console.check()


def test_dragging_the_threshold_slider(digits, open_page):
    """A drag of the slider's thumb (and arrow keys) move the threshold more than one step."""
    server, ids = digits
    page, console = open_page(server, pair_hash("attack", ids["a"]))
    bb = page.get_by_test_id("threshold-slider").bounding_box()
    x, y = bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2  # the thumb at index 100 of 0..200
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x + 6 * k, y)
    page.mouse.up()
    dragged = int(page.get_by_test_id("threshold-slider").input_value())
    page.get_by_test_id("threshold-slider").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    keyed = int(page.get_by_test_id("threshold-slider").input_value())
    # 60 px of a track of about 200 steps over its width: well past one step
    assert dragged >= 130, f"a drag of 60 px from index 100 stopped at {dragged}"
    assert keyed == dragged + 3, f"3 x ArrowRight: {dragged} -> {keyed}"
    assert page.evaluate("document.activeElement?.dataset.testid") == "threshold-slider"
    # the page follows the slider: the state, the shown threshold and the scores
    att = server.api("attack", a=ids["a"], b=f"reference:{ids['a']}")
    g = support.grid(*att["ranges"]["entropy"], att["bins"])
    assert state(page)["threshold"] == pytest.approx(g[keyed], abs=1e-12)
    assert float(page.get_by_test_id("threshold-value").get_attribute("data-value")) == pytest.approx(
        g[keyed], abs=1e-12
    )
    priv = {m: support.privacy(att, m) for m in ("a", "b")}
    for m in ("a", "b"):
        _assert_scores(page, support.custom(att, m, "entropy", g[keyed]), priv[m], m)
    # one slider element all along, its testids and range attributes kept
    expect(page.get_by_test_id("threshold-slider")).to_have_count(1)
    expect(page.get_by_test_id("threshold-slider")).to_have_attribute("data-max", str(att["ranges"]["entropy"][1]))
    console.check()


def test_the_url_hash_reproduces_the_view(digits, open_page):
    server, ids = digits
    a = ids["a"]
    page, console = open_page(server, pair_hash("attack", a))
    wait_cloud(page, "attack-a")
    page.get_by_test_id("attack-feature").select_option("confidence")
    wait_cloud(page, "attack-a")
    _set_slider(page, 57)
    # brush the middle of A's attack strip
    strip = page.get_by_test_id("canvas-attack-a")
    strip.scroll_into_view_if_needed()
    bb = strip.bounding_box()
    page.mouse.move(bb["x"] + bb["width"] * 0.3, bb["y"] + 5)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * 0.6, bb["y"] + bb["height"] - 5, steps=6)
    page.mouse.up()
    page.wait_for_function(f"() => {U}.state.selection.size > 0", timeout=WAIT_MS)
    before = state(page)
    url = page.url
    assert page.evaluate(f"{U}.hash()") == "#" + url.split("#", 1)[1]
    scores = {m: _scores(page, m) for m in ("a", "b")}
    lit = {n: sorted(page.evaluate(f"{U}.highlighted('{n}')")) for n in ("attack-a", "attack-b")}
    panel = [r.get_attribute("data-id") for r in page.get_by_test_id("instance-row").all()]
    assert before["feature"] == "confidence" and before["threshold"] is not None and lit["attack-a"]

    again, console2 = open_page(server, "#" + url.split("#", 1)[1])
    wait_cloud(again, "attack-a")
    expect(again.get_by_test_id("instance-row")).to_have_count(len(panel))
    assert state(again) == before
    assert {m: _scores(again, m) for m in ("a", "b")} == scores
    assert {n: sorted(again.evaluate(f"{U}.highlighted('{n}')")) for n in ("attack-a", "attack-b")} == lit
    assert [r.get_attribute("data-id") for r in again.get_by_test_id("instance-row").all()] == panel
    expect(again.get_by_test_id("tab-attack")).to_have_attribute("aria-selected", "true")
    console.check()
    console2.check()


def test_png_and_svg_exports_are_valid_files(digits, open_page, tmp_path):
    server, ids = digits
    page, console = open_page(server, pair_hash("classifier", ids["a"]))
    wait_cloud(page, "embedding-a")
    expect(page.get_by_test_id("svg-cka")).to_be_visible()
    page.evaluate(f"{U}.select({json.dumps(server.api('attack', a=ids['a'])['forget']['ids'][:5])})")
    checked = set()
    for view in ("classifier", "attack"):
        if view == "attack":
            page.get_by_test_id("tab-attack").click()
            wait_cloud(page, "attack-a")
        idle(page)
        on_page = page.evaluate("[...document.querySelectorAll('figure[data-plot]')].map(f => f.dataset.plot)")
        # exactly the plots on the page: none of a view already left
        assert on_page and page.evaluate(f"{U}.plots()") == on_page
        if view == "attack":
            for gone in ("embedding-a", "embedding-b", "cka", "matrix-a", "class-accuracy"):
                assert page.evaluate(f"{U}.exportSvg({json.dumps(gone)})") is None, gone
                assert page.evaluate(f"{U}.pngDataUrl({json.dumps(gone)})") is None, gone
        for name in on_page:
            svg = page.evaluate(f"{U}.exportSvg({json.dumps(name)})")
            root = ET.fromstring(svg.encode())
            assert root.tag == "{http://www.w3.org/2000/svg}svg" and len(root) > 0, name
            assert float(root.get("width")) > 0 and float(root.get("height")) > 0, name
            png = support.data_url_bytes(page.evaluate(f"{U}.pngDataUrl({json.dumps(name)})"))
            w, h = support.png_size(png)
            assert w > 10 and h > 10 and len(png) > 500, name
            _assert_not_blank(png, name)
            checked.add(name)
    assert {
        "embedding-a",
        "embedding-b",
        "cka",
        "matrix-a",
        "class-accuracy",
        "attack-hist-a",
        "attack-points-b",
    } <= checked
    # the buttons download the same files
    for name, kind in (("attack-hist-a", "png"), ("attack-points-a", "svg")):
        with page.expect_download(timeout=WAIT_MS) as d:
            page.get_by_test_id(f"export-{kind}-{name}").click()
        path = tmp_path / d.value.suggested_filename
        d.value.save_as(path)
        assert path.name == f"{name}.{kind}"
        data = path.read_bytes()
        if kind == "png":
            assert min(support.png_size(data)) > 10
        else:
            assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"
    console.check()


def _assert_not_blank(png: bytes, name: str) -> None:
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(png)).convert("L"))
    assert (img < 200).sum() > 20, f"the PNG of {name} is blank"


def test_deletion_requests_view(service, open_page, shots):
    server, req = service
    page, console = open_page(server, "#view=requests")
    rows = page.get_by_test_id("request-row")
    expect(rows).to_have_count(1)
    rows.first.click()
    idle(page)
    detail = server.api(f"requests/{req}")
    assert state(page)["request"] == req
    events = page.get_by_test_id("timeline-event")
    expect(events).to_have_count(len(detail["timeline"]))
    shown = [e.get_attribute("data-state") for e in events.all()]
    assert shown == [e["event"] for e in detail["timeline"]]
    for e in ("received", "batched", "unlearned", "verified", "promoted"):
        assert e in shown, shown
    expect(page.get_by_test_id("gate-summary")).to_have_attribute("data-passed", "true")
    expect(page.get_by_test_id("gate-check")).to_have_count(len(detail["gate"]["checks"]))
    expect(page.get_by_test_id("certificate-status")).to_have_attribute("data-verified", "true")
    page.get_by_test_id("request-detail").locator("summary", has_text="signed document").click()
    doc = page.get_by_test_id("certificate-document")
    expect(doc).to_be_visible()
    assert json.loads(doc.inner_text()) == detail["certificate"]["document"]
    assert detail["certificate"]["document"]["body"]["request_id"] == req
    shot(page, shots, "requests")
    # the hash holds the request
    again, console2 = open_page(server, page.evaluate(f"{U}.hash()"))
    expect(again.get_by_test_id("certificate-status")).to_have_attribute("data-verified", "true")
    console.check()
    console2.check()


def test_language_model_view(lm, open_page, shots):
    server, npo = lm
    page, console = open_page(server, pair_hash("lm", npo))
    overview = server.api("lm/overview")
    expect(page.get_by_test_id("scatter-point").first).to_be_visible()
    assert npo in {p.get_attribute("data-id") for p in page.get_by_test_id("scatter-point").all()}
    expect(page.get_by_test_id("lm-run-row")).to_have_count(len(overview["runs"]))
    expect(page.get_by_test_id("probe-row").first).to_be_visible()
    questions = server.api("lm/questions", a=npo, b=f"reference:{npo}", split="forget")
    expect(page.get_by_test_id("question-item")).to_have_count(len(questions["questions"]))
    page.locator("[data-testid=question-item][data-index='1']").click()
    idle(page)
    q = server.api("lm/question", a=npo, b=f"reference:{npo}", split="forget", index=1)
    expect(page.get_by_test_id("question-text")).to_contain_text(q["question"])
    for side in ("a", "b"):
        expect(page.get_by_test_id(f"answer-{side}")).to_contain_text(q[side]["greedy"].strip())
    expect(page.get_by_test_id("svg-token-bars")).to_be_visible()
    assert state(page)["question"] == "forget:1"
    shot(page, shots, "lm")
    console.check()


# --------------------------------------------------------------------------- bad input: a message, never a blank page
def test_an_empty_workspace_says_so(empty, open_page, shots):
    page, console = open_page(empty)
    expect(page.get_by_test_id("empty-workspace")).to_be_visible()
    expect(page.get_by_test_id("empty-workspace")).to_contain_text("no runs")
    shot(page, shots, "empty-workspace", height=400)
    page.get_by_test_id("tab-classifier").click()
    expect(page.get_by_test_id("no-pair")).to_be_visible()
    # a link to runs that are not there
    bad, console2 = open_page(empty, pair_hash("classifier", "abc123"))
    err = bad.get_by_test_id("error")
    expect(err).to_be_visible()
    assert err.get_attribute("data-status") == "404" and "abc123" in err.get_by_test_id("error-detail").inner_text()
    console.check()
    console2.check(allow={"/api/v1/pair": 404})


def test_runs_of_different_tasks_picked_for_comparison(digits, open_page, shots):
    server, ids = digits
    page, console = open_page(server)
    page.locator(f"[data-testid=run-row][data-id='{ids['a']}'] [data-testid=pick-a-radio]").check()
    page.locator(f"[data-testid=run-row][data-id='{ids['other']}'] [data-testid=pick-b-radio]").check()
    page.get_by_test_id("compare").click()
    idle(page)
    err = page.get_by_test_id("view").get_by_test_id("error")
    expect(err).to_be_visible()
    assert err.get_attribute("data-status") == "422"
    detail = err.get_by_test_id("error-detail").inner_text()
    assert "different tasks" in detail and "digits · linear" in detail
    expect(page.get_by_test_id("pair-error")).to_contain_text("different tasks")
    shot(page, shots, "error-different-tasks", height=400)
    console.check(allow={"/api/v1/pair": 422})


def test_a_run_whose_artifact_was_deleted(digits, open_page, shots):
    server, ids = digits
    page, console = open_page(server)
    row = page.locator(f"[data-testid=run-row][data-id='{ids['gone']}']")
    assert "missing" in row.get_attribute("title")
    row.get_by_test_id("compare-ref").click()
    idle(page)
    err = page.get_by_test_id("view").get_by_test_id("error")
    expect(err).to_be_visible()
    assert err.get_attribute("data-status") == "409"
    detail = err.get_by_test_id("error-detail").inner_text()
    assert "missing" in detail and ids["gone"] in detail
    assert view_text(page).strip()
    shot(page, shots, "error-missing-artifact", height=400)
    console.check(allow={"/api/v1/pair": 409})
