// The classifier view: class-wise accuracy, prediction matrices, embeddings (Canvas 2D
// point clouds with a hover link between an instance's two positions), CKA per layer, and
// the instance panel.

import { cached, type Cka, type Classes, type Embeddings, type Pair } from "../api";
import { CLASS_PALETTE, COLOR_A, COLOR_B, groupedBars, lineChart, matrixChart } from "../charts";
import { clear, computing, errorBox, h, into, loading } from "../dom";
import { figure, svgExporter } from "../export";
import { PointCloud } from "../pointcloud";
import { PROJECTIONS, type Projection, type State } from "../state";
import { selectIds, type Ctx, type ViewHandle } from "./common";
import { InstancePanel } from "./instances";

const CLOUD_W = 400;
const CLOUD_H = 360;

export function mountClassifier(el: HTMLElement, ctx: Ctx, pair: Pair): ViewHandle {
  const { store } = ctx;
  const s0 = store.get();
  const q = { a: s0.a, b: s0.b };
  let split = "forget";
  let classes: Classes | null = null;
  let emb: Embeddings | null = null;
  let clouds: { a: PointCloud; b: PointCloud } | null = null;
  let activeCell: { model: "a" | "b"; i: number; j: number } | null = null;
  let embRequest = 0; // the newest embeddings request: an older answer (another projection) is dropped
  const classNames = pair.task.classes ?? [];
  const panel = new InstancePanel(store, pair, classNames);

  const accBox = h("section", { class: "card", testid: "class-accuracy" });
  const matBox = h("section", { class: "card", testid: "prediction-matrices" });
  const embBox = h("section", { class: "card", testid: "embeddings" });
  const ckaBox = h("section", { class: "card", testid: "cka" });
  const main = h("div", { class: "main-col" }, accBox, matBox, embBox, ckaBox);
  el.append(h("div", { class: "with-panel", testid: "view-classifier" }, main, panel.el));

  // ------------------------------------------------------------ classes + matrices
  const splitTabs = () =>
    h(
      "div",
      { class: "tabs small-tabs", testid: "split-tabs" },
      (classes?.splits ?? ["forget", "retain", "test"]).map((sp) =>
        h(
          "button",
          {
            type: "button",
            class: sp === split ? "active" : "",
            testid: `split-${sp}`,
            onclick: () => {
              split = sp;
              activeCell = null;
              drawClasses();
            },
          },
          sp,
        ),
      ),
    );

  function selectedMatrix(model: "a" | "b"): number[][] | null {
    if (!emb || !classes) return null;
    const sel = store.get().selection;
    if (!sel.size) return null;
    const pred = emb.sample.pred?.[model];
    const k = classes.classes.length;
    const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
    emb.sample.ids.forEach((id, i) => {
      if (!sel.has(id) || emb!.sample.split[i] !== split) return;
      const t = emb!.sample.label[i];
      const p = pred ? pred[i] : t;
      if (m[t] && p >= 0 && p < k) m[t][p]++;
    });
    return m;
  }

  function cellClick(model: "a" | "b", i: number, j: number) {
    activeCell = { model, i, j };
    if (!emb) {
      drawClasses();
      return;
    }
    const pred = emb.sample.pred?.[model];
    const ids = emb.sample.ids.filter((_, k) => emb!.sample.split[k] === split && emb!.sample.label[k] === i && (!pred || pred[k] === j));
    selectIds(store, ids);
  }

  function drawClasses() {
    clear(accBox);
    clear(matBox);
    if (!classes) return;
    const c = classes;
    const marked = new Set(c.forget_classes);
    const acc = groupedBars({
      categories: c.classes,
      series: [
        { label: `A ${pair.a.label}`, color: COLOR_A, values: c.accuracy.a[split] ?? [] },
        { label: `B ${pair.b.label}`, color: COLOR_B, values: c.accuracy.b[split] ?? [] },
      ],
      marked,
      yLabel: `accuracy (${split})`,
      testid: "svg-class-accuracy",
    });
    accBox.append(h("h3", null, "Class-wise accuracy"), splitTabs(), figure("class-accuracy", `Class-wise accuracy on ${split}`, acc, svgExporter(acc)));
    const row = h("div", { class: "side-by-side" });
    for (const model of ["a", "b"] as const) {
      const counts = c.matrix[model][split];
      if (!counts) continue;
      const m = matrixChart({
        classes: c.classes,
        counts,
        color: model === "a" ? COLOR_A : COLOR_B,
        marked,
        selected: selectedMatrix(model),
        active: activeCell && activeCell.model === model ? [activeCell.i, activeCell.j] : null,
        onCell: (i, j) => cellClick(model, i, j),
        testid: `svg-matrix-${model}`,
        title: `${model.toUpperCase()} ${pair[model].label}`,
      });
      row.append(figure(`matrix-${model}`, `Prediction matrix ${model.toUpperCase()} (${split})`, m, svgExporter(m)));
    }
    const note =
      emb && !emb.sample.pred
        ? h("p", { class: "hint", testid: "matrix-note" }, "Clicking a cell selects the sampled instances of that true class (the embeddings sample carries no predictions).")
        : h("p", { class: "hint" }, "Click a cell to select the sampled instances with that true and predicted class.");
    matBox.append(h("h3", null, "Prediction matrices (true × predicted)"), splitTabs(), row, note);
  }

  // ------------------------------------------------------------ embeddings
  const embControls = h("div", { class: "controls" });
  const embBody = h("div", { class: "emb-body" });
  embBox.append(h("h3", null, "Embeddings"), embControls, embBody);

  function renderEmbControls(s: State) {
    clear(embControls);
    const modeBtn = (mode: "brush" | "pan", label: string) =>
      h(
        "button",
        {
          type: "button",
          class: `small ${clouds && clouds.a.mode === mode ? "active" : ""}`,
          testid: `embedding-mode-${mode}`,
          onclick: () => {
            if (!clouds) return;
            clouds.a.mode = clouds.b.mode = mode;
            renderEmbControls(store.get());
          },
        },
        label,
      );
    embControls.append(
      h(
        "label",
        null,
        "projection ",
        h(
          "select",
          { testid: "projection", onchange: (e: Event) => store.set({ projection: (e.target as HTMLSelectElement).value as Projection }) },
          PROJECTIONS.map((p) => h("option", { value: p, selected: p === s.projection }, p.toUpperCase())),
        ),
      ),
      modeBtn("brush", "brush"),
      modeBtn("pan", "pan"),
      h(
        "button",
        {
          type: "button",
          class: "small",
          testid: "embedding-reset",
          onclick: () => {
            clouds?.a.resetZoom();
            clouds?.b.resetZoom();
          },
        },
        "reset zoom",
      ),
      h("span", { class: "hint" }, "drag to brush (Ctrl adds), wheel to zoom, Shift-drag or pan mode to pan, double-click to reset"),
    );
  }

  function loadEmbeddings(s: State) {
    clouds?.a.destroy();
    clouds?.b.destroy();
    clouds = null;
    ctx.cloud("embedding-a", null);
    ctx.cloud("embedding-b", null);
    renderEmbControls(s);
    clear(embBody);
    const projection = s.projection;
    const why =
      projection === "umap"
        ? "UMAP of both models' layer outputs (the first UMAP in a server process compiles umap-learn, about 20 s; later ones take seconds, then the result is cached); the rest of the page stays usable, and PCA is one click away"
        : "projecting both models' layer outputs (the first time for these models; then cached)";
    const wait = computing(`${projection.toUpperCase()} embeddings`, why);
    wait.setAttribute("data-projection", projection);
    embBody.append(wait);
    const mine = ++embRequest;
    cached<Embeddings>("/classifier/embeddings", { a: q.a, b: q.b, projection }).then(
      (e) => {
        if (mine !== embRequest) return;
        if (!e.sample.pred && e.pred) e.sample.pred = e.pred;
        emb = e;
        drawEmbeddings(e);
        drawClasses();
      },
      (err) => {
        if (mine !== embRequest) return;
        clear(embBody);
        embBody.append(errorBox(err, `${projection.toUpperCase()} embeddings`));
      },
    );
  }

  function drawEmbeddings(e: Embeddings) {
    clear(embBody);
    const n = e.sample.ids.length;
    const color = Uint8Array.from(e.sample.label, (l) => l % CLASS_PALETTE.length);
    const ring = Uint8Array.from(e.sample.split, (sp) => (sp === "forget" ? 1 : 0));
    const overlay = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    overlay.setAttribute("class", "link-overlay");
    overlay.setAttribute("data-testid", "embedding-link");
    const link = document.createElementNS("http://www.w3.org/2000/svg", "line");
    link.setAttribute("stroke", "#d00");
    link.setAttribute("stroke-width", "1.5");
    link.setAttribute("stroke-dasharray", "5 3");
    link.style.display = "none";
    overlay.append(link);
    const wrap = h("div", { class: "pair-clouds" });
    const describe = (i: number) => `${e.sample.ids[i]} · ${classNames[e.sample.label[i]] ?? e.sample.label[i]} · ${e.sample.split[i]}`;
    // one shared extent so the aligned clouds are drawn to the same scale
    const xd = extentOf([...e.a, ...e.b].map((p) => p[0]));
    const yd = extentOf([...e.a, ...e.b].map((p) => p[1]));
    const make = (model: "a" | "b", pts: [number, number][]) =>
      new PointCloud({
        name: `embedding-${model}`,
        width: CLOUD_W,
        height: CLOUD_H,
        ids: e.sample.ids,
        xs: Float64Array.from(pts, (p) => p[0]),
        ys: Float64Array.from(pts, (p) => p[1]),
        color,
        palette: CLASS_PALETTE,
        ring,
        equalAspect: true,
        xDomain: xd,
        yDomain: yd,
        describe,
        onSelect: (ids, mode) => selectIds(store, ids, mode),
        onHover: (i) => hover(model, i),
      });
    const ca = make("a", e.a);
    const cb = make("b", e.b);
    clouds = { a: ca, b: cb };
    ctx.cloud("embedding-a", ca);
    ctx.cloud("embedding-b", cb);
    const hover = (model: "a" | "b", i: number | null) => {
      const other = model === "a" ? cb : ca;
      if (i === null) {
        other.setHover(-1);
        link.style.display = "none";
        return;
      }
      other.setHover(i);
      const wr = wrap.getBoundingClientRect();
      const ra = ca.canvas.getBoundingClientRect();
      const rb = cb.canvas.getBoundingClientRect();
      const [ax, ay] = ca.pixel(i);
      const [bx, by] = cb.pixel(i);
      link.setAttribute("x1", String(ra.left - wr.left + ax));
      link.setAttribute("y1", String(ra.top - wr.top + ay));
      link.setAttribute("x2", String(rb.left - wr.left + bx));
      link.setAttribute("y2", String(rb.top - wr.top + by));
      link.setAttribute("data-id", e.sample.ids[i]);
      link.style.display = "";
    };
    ca.setSelection(store.get().selection);
    cb.setSelection(store.get().selection);
    wrap.append(
      figure("embedding-a", `A ${pair.a.label}`, ca.el, ca.exporter()),
      figure("embedding-b", `B ${pair.b.label} (aligned to A)`, cb.el, cb.exporter()),
      overlay,
    );
    const present = [...new Set(e.sample.label)].sort((x, y) => x - y);
    const legendEl = h(
      "div",
      { class: "legend", testid: "embedding-legend" },
      present.map((l) => h("span", null, h("span", { class: "swatch", style: `background:${CLASS_PALETTE[l % CLASS_PALETTE.length]}` }), classNames[l] ?? String(l))),
      h("span", null, h("span", { class: "swatch ring" }), "forget set (outlined)"),
    );
    embBody.append(
      wrap,
      legendEl,
      h("p", { class: "hint", testid: "embedding-meta" }, `${n} instances · layer ${e.layer} · ${e.projection.toUpperCase()} · Procrustes disparity ${e.procrustes_disparity.toFixed(4)}`),
    );
    renderEmbControls(store.get());
  }

  // ------------------------------------------------------------ CKA
  void into(ckaBox, "CKA", async () => {
    const c = await cached<Cka>("/classifier/cka", q);
    const svg = lineChart({
      xLabels: c.layers,
      series: [
        { label: "A vs original", color: COLOR_A, values: c.a_vs_original },
        { label: "A vs reference", color: COLOR_A, values: c.a_vs_reference, dash: "5 3" },
        { label: "B vs original", color: COLOR_B, values: c.b_vs_original },
        { label: "B vs reference", color: COLOR_B, values: c.b_vs_reference, dash: "5 3" },
        ...(c.a_vs_b ? [{ label: "A vs B", color: "#6b4fa0", values: c.a_vs_b, dash: "1 3" }] : []),
      ],
      yDomain: [0, 1],
      yLabel: "linear CKA",
      testid: "svg-cka",
    });
    return h(
      "div",
      null,
      h("h3", null, "Layer-wise CKA"),
      figure("cka", "CKA per layer against the original and the reference", svg, svgExporter(svg)),
      c.reference_missing ? h("p", { class: "hint", testid: "cka-reference-missing" }, `no reference curves: ${c.reference_missing}`) : null,
      c.n ? h("p", { class: "hint" }, `linear CKA on a fixed seeded sample of ${c.n} instances`) : null,
    );
  });

  // ------------------------------------------------------------ start
  accBox.append(loading("class-wise accuracy"));
  cached<Classes>("/classifier/classes", q).then(
    (c) => {
      classes = c;
      drawClasses();
    },
    (err) => {
      clear(accBox);
      clear(matBox);
      accBox.append(errorBox(err, "class-wise accuracy"));
    },
  );
  loadEmbeddings(s0);

  return {
    update(s: State, prev: State) {
      if (s.projection !== prev.projection) loadEmbeddings(s);
      if (s.selection !== prev.selection) {
        clouds?.a.setSelection(s.selection);
        clouds?.b.setSelection(s.selection);
        drawClasses();
        panel.update(s);
      }
    },
    destroy() {
      embRequest++; // a late embeddings answer draws nothing
      clouds?.a.destroy();
      clouds?.b.destroy();
      ctx.cloud("embedding-a", null);
      ctx.cloud("embedding-b", null);
    },
  };
}

function extentOf(v: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of v) {
    if (!Number.isFinite(x)) continue;
    lo = Math.min(lo, x);
    hi = Math.max(hi, x);
  }
  if (lo === Infinity) return [0, 1];
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}
