// The attack simulation: per-feature histograms forget vs holdout for both models, a
// threshold slider, the Comparator's strategies and the resulting scores; each example as a
// point (click/brush selects); U-LiRA per-example success where the run has it.

import {
  applyStrategy,
  BINS,
  featureRange,
  featureSets,
  histogram,
  binOf,
  privacyScore,
  STRATEGIES,
  STRATEGY_LABELS,
  sweep,
  thresholdGrid,
  type AttackPoint,
  type FeatureSets,
  type StrategyResult,
} from "../attack";
import { cached, type Attack, type Pair, type Ulira } from "../api";
import { COLOR_A, COLOR_B, COLOR_FORGET, COLOR_HOLDOUT, histogramChart } from "../charts";
import { clear, computing, errorBox, fmt, h, shortId } from "../dom";
import { figure, svgExporter } from "../export";
import { PointCloud } from "../pointcloud";
import type { State } from "../state";
import { selectIds, type Ctx, type ViewHandle } from "./common";
import { InstancePanel } from "./instances";

const HIST_BINS = 50;

interface ModelFeature {
  sets: FeatureSets;
  /** values per id (clipped), forget then holdout, aligned with ids */
  ids: string[];
  values: Float64Array;
  isForget: Uint8Array;
}

export function mountAttack(el: HTMLElement, ctx: Ctx, pair: Pair): ViewHandle {
  const { store } = ctx;
  const s0 = store.get();
  const root = h("div", { class: "with-panel", testid: "view-attack" });
  const main = h("div", { class: "main-col" });
  const panel = new InstancePanel(store, pair, pair.task.classes ?? []);
  root.append(main, panel.el);
  el.append(root);
  main.append(computing("attack features", "scoring both models on the forget set and the holdout (once per pair; then cached)"));
  let data: Attack | null = null;
  const built = new Map<string, { a: ModelFeature; b: ModelFeature }>();
  let privacy: { a: number; b: number } | null = null;
  let strips: { a: PointCloud; b: PointCloud } | null = null;
  let histBoxes: { a: HTMLElement; b: HTMLElement } | null = null;
  let scoreBoxes: { a: HTMLElement; b: HTMLElement } | null = null;
  let controls: HTMLElement | null = null;
  let uliraBox: HTMLElement | null = null;
  let result: StrategyResult | null = null;
  let stripBoxes: { a: HTMLElement; b: HTMLElement } | null = null;

  const bins = () => data?.bins ?? BINS;

  function build(feature: string): { a: ModelFeature; b: ModelFeature } {
    const hit = built.get(feature);
    if (hit) return hit;
    const d = data!;
    const range = featureRange(feature, d.ranges);
    const one = (model: "a" | "b"): ModelFeature => {
      const f = d.forget[model][feature];
      const ho = d.holdout[model][feature];
      if (!f || !ho) throw new Error(`the attack data has no '${feature}' values for model ${model.toUpperCase()}`);
      const ids = [...d.forget.ids, ...d.holdout.ids];
      const raw = [...f, ...ho];
      const values = Float64Array.from(raw, (v) => (v === null || !Number.isFinite(v) ? NaN : Math.min(Math.max(v, range[0]), range[1])));
      const isForget = Uint8Array.from(ids, (_, i) => (i < d.forget.ids.length ? 1 : 0));
      return { sets: featureSets(f, ho, range), ids, values, isForget };
    };
    const out = { a: one("a"), b: one("b") };
    built.set(feature, out);
    return out;
  }

  function currentFeature(s: State): string {
    const fs = data!.features;
    return fs.includes(s.feature) ? s.feature : fs[0];
  }

  function compute(s: State): StrategyResult {
    const feature = currentFeature(s);
    const { a, b } = build(feature);
    const grid = thresholdGrid(a.sets.range, bins());
    const t = s.threshold ?? grid[Math.floor(grid.length / 2)];
    return applyStrategy(s.strategy, a.sets, b.sets, t, bins());
  }

  // The controls are built once and updated in place: rebuilding them on every state change
  // replaced the slider under the pointer at its first input event, which ended a drag after
  // one step and dropped the keyboard focus after one arrow key.
  let controlEls: {
    select: HTMLSelectElement;
    buttons: Map<string, HTMLButtonElement>;
    slider: HTMLInputElement;
    output: HTMLOutputElement;
    hint: HTMLElement;
    feature: string;
    grid: number[];
  } | null = null;

  function buildControls() {
    if (!controls || !data) return;
    clear(controls);
    const select = h(
      "select",
      { testid: "attack-feature", onchange: (e: Event) => store.set({ feature: (e.target as HTMLSelectElement).value }) },
      data.features.map((f) => h("option", { value: f }, f)),
    );
    const buttons = new Map<string, HTMLButtonElement>();
    for (const st of STRATEGIES)
      buttons.set(st, h("button", { type: "button", class: "small", testid: `strategy-${st}`, "aria-pressed": "false", onclick: () => store.set({ strategy: st }) }, STRATEGY_LABELS[st]));
    const slider = h("input", {
      type: "range",
      min: 0,
      max: bins() - 1,
      step: 1,
      testid: "threshold-slider",
      "aria-label": "threshold",
      oninput: (e: Event) => {
        const grid = controlEls?.grid;
        if (!grid) return;
        const i = Number((e.target as HTMLInputElement).value);
        store.set({ threshold: grid[i], strategy: "custom" });
      },
    });
    const output = h("output", { testid: "threshold-value" });
    const hint = h("span", { class: "hint" });
    controls.append(
      h("label", null, "feature ", select),
      h("span", { class: "strategies", testid: "attack-strategy" }, [...buttons.values()]),
      h("label", { class: "slider" }, "threshold ", slider, output, hint),
    );
    controlEls = { select, buttons, slider, output, hint, feature: "", grid: [] };
  }

  function renderControls(s: State) {
    if (!controls || !data) return;
    if (!controlEls) buildControls();
    const c = controlEls!;
    const feature = currentFeature(s);
    const range = featureRange(feature, data.ranges);
    if (feature !== c.feature) {
      c.feature = feature;
      c.grid = thresholdGrid(range, bins());
      c.slider.max = String(c.grid.length - 1);
      c.slider.setAttribute("data-min", String(range[0]));
      c.slider.setAttribute("data-max", String(range[1]));
      c.hint.textContent = ` [${range[0]}, ${range[1]}], ${c.grid.length} steps`;
    }
    if (c.select.value !== feature) c.select.value = feature;
    for (const [st, b] of c.buttons) {
      b.classList.toggle("active", s.strategy === st);
      b.setAttribute("aria-pressed", String(s.strategy === st));
    }
    const grid = c.grid;
    const shown = result ? result.a.threshold : (s.threshold ?? grid[Math.floor(grid.length / 2)]);
    let idx = 0;
    for (let i = 1; i < grid.length; i++) if (Math.abs(grid[i] - shown) < Math.abs(grid[idx] - shown)) idx = i;
    // only when it differs: writing the value the user is dragging to is a no-op, not a reset
    if (c.slider.value !== String(idx)) c.slider.value = String(idx);
    c.output.setAttribute("data-value", String(shown));
    c.output.textContent = shown.toFixed(4);
  }

  function scoreTable(model: "a" | "b", p: AttackPoint): HTMLElement {
    const cell = (key: string, label: string, v: number, help: string) =>
      h("tr", null, h("th", { title: help }, label), h("td", { class: "num", testid: `score-${model}-${key}`, "data-value": v }, fmt(v, 4)));
    return h(
      "table",
      { class: "scores", testid: `scores-${model}` },
      cell("threshold", "threshold", p.threshold, "the rule's threshold t"),
      h("tr", null, h("th", null, "members"), h("td", { testid: `score-${model}-direction`, "data-value": p.direction }, p.direction === "above" ? "value ≥ t" : "value < t")),
      cell("tpr", "TPR", p.tpr, "forget-set examples flagged as members"),
      cell("fpr", "FPR", p.fpr, "holdout examples flagged as members"),
      cell("accuracy", "attack accuracy", p.accuracy, "(members flagged + non-members not flagged) / all"),
      cell("fq", "FQ(t) = 2^-ε", p.fq, "the Comparator's forgetting quality at t"),
      cell("attack", "attack score 1 − FQ", p.attackScore, "higher: the threshold tells forget from holdout"),
      privacy ? cell("privacy", "privacy score", privacy[model], "1 − the worst attack score over every feature, direction and threshold") : null,
    );
  }

  function selectedCounts(mf: ModelFeature, sel: Set<string>, forget: boolean): number[] {
    const out = new Array<number>(HIST_BINS).fill(0);
    if (!sel.size) return out;
    const [lo, hi] = mf.sets.range;
    const w = (hi - lo) / HIST_BINS;
    for (let i = 0; i < mf.ids.length; i++) {
      if ((mf.isForget[i] === 1) !== forget || !sel.has(mf.ids[i]) || !Number.isFinite(mf.values[i])) continue;
      out[binOf(mf.values[i], lo, w, HIST_BINS)]++;
    }
    return out;
  }

  function renderModels(s: State) {
    if (!histBoxes || !scoreBoxes || !result) return;
    const feature = currentFeature(s);
    const both = build(feature);
    for (const model of ["a", "b"] as const) {
      const mf = both[model];
      const p = result[model];
      const [lo, hi] = mf.sets.range;
      const svg = histogramChart({
        range: [lo, hi],
        up: { label: "forget (members)", color: COLOR_FORGET, counts: histogram(mf.sets.forget, lo, hi, HIST_BINS), selected: selectedCounts(mf, s.selection, true) },
        down: { label: "holdout (non-members)", color: COLOR_HOLDOUT, counts: histogram(mf.sets.holdout, lo, hi, HIST_BINS), selected: selectedCounts(mf, s.selection, false) },
        threshold: p.threshold,
        memberSide: p.direction,
        xLabel: feature,
        testid: `svg-attack-hist-${model}`,
        onBrush: (x0, x1) => selectIds(store, mf.ids.filter((_, i) => mf.values[i] >= x0 && mf.values[i] <= x1)),
        onBin: (side, bin) => {
          const w = (hi - lo) / HIST_BINS;
          selectIds(store, mf.ids.filter((_, i) => (mf.isForget[i] === 1) === (side === "up") && Number.isFinite(mf.values[i]) && binOf(mf.values[i], lo, w, HIST_BINS) === bin));
        },
      });
      clear(histBoxes[model]);
      histBoxes[model].append(figure(`attack-hist-${model}`, `${model.toUpperCase()} ${pair[model].label}: ${feature}, forget vs holdout`, svg, svgExporter(svg)));
      clear(scoreBoxes[model]);
      scoreBoxes[model].append(scoreTable(model, p));
      strips?.[model].setVlines([{ x: p.threshold, color: "#000" }]);
    }
  }

  function makeStrips(s: State, boxes: { a: HTMLElement; b: HTMLElement }) {
    strips?.a.destroy();
    strips?.b.destroy();
    const feature = currentFeature(s);
    const both = build(feature);
    const mk = (model: "a" | "b") => {
      const mf = both[model];
      const ys = Float64Array.from(mf.ids, (_, i) => (mf.isForget[i] ? 0.15 + 0.85 * jitter(i) : -0.15 - 0.85 * jitter(i)));
      const c = new PointCloud({
        name: `attack-${model}`,
        width: 424,
        height: 120,
        ids: mf.ids,
        xs: mf.values,
        ys,
        color: Uint8Array.from(mf.isForget, (f) => (f ? 0 : 1)),
        palette: [COLOR_FORGET, COLOR_HOLDOUT],
        radius: 2,
        xDomain: mf.sets.range,
        yDomain: [-1.05, 1.05],
        describe: (i) => `${mf.ids[i]} · ${mf.isForget[i] ? "forget" : "holdout"} · ${feature} ${fmt(mf.values[i], 4)}`,
        onSelect: (ids, mode) => selectIds(store, ids, mode),
      });
      c.setSelection(store.get().selection);
      ctx.cloud(`attack-${model}`, c);
      clear(boxes[model]);
      boxes[model].append(figure(`attack-points-${model}`, `${model.toUpperCase()}: each example (forget above, holdout below); click or drag to select`, c.el, c.exporter()));
      return c;
    };
    strips = { a: mk("a"), b: mk("b") };
  }

  function renderUlira(s: State) {
    if (!uliraBox || !data) return;
    clear(uliraBox);
    const u = data.ulira;
    uliraBox.append(h("h3", null, "U-LiRA per-example success"));
    const summaryLine = (model: "a" | "b") => {
      const sm = u?.summary?.[model];
      if (!sm) return null;
      return h("p", { class: "hint", testid: `ulira-${model}-summary` }, Object.entries(sm).map(([k, v]) => `${k} ${fmt(v, 4)}`).join(" · "));
    };
    if (!u || (!u.a && !u.b)) {
      const reasons = (["a", "b"] as const).map((m) => {
        const why = u?.reason?.[m];
        return h("div", { class: "hint", testid: `ulira-${m}-reason` }, `${m.toUpperCase()}: ${why || "no U-LiRA privacy report is stored for this model"}`, summaryLine(m));
      });
      uliraBox.append(h("div", { testid: "ulira-none" }, reasons));
      return;
    }
    const row = h("div", { class: "side-by-side" });
    for (const model of ["a", "b"] as const) {
      const r: Ulira | null = u[model];
      if (!r) {
        row.append(h("div", { class: "hint", testid: `ulira-${model}-reason` }, `${model.toUpperCase()}: ${u.reason?.[model] || "no U-LiRA report"}`, summaryLine(model)));
        continue;
      }
      const vals = r.success.filter((v): v is number => v !== null && Number.isFinite(v));
      const mean = vals.length ? vals.reduce((x, y) => x + y, 0) / vals.length : NaN;
      const selVals = r.ids.map((id, i) => (s.selection.has(id) ? r.success[i] : null)).filter((v): v is number => v !== null && Number.isFinite(v));
      const selMean = selVals.length ? selVals.reduce((x, y) => x + y, 0) / selVals.length : NaN;
      const counts = histogram(Float64Array.from(vals), 0, 1, 20);
      const aucVals = (r.auc ?? []).filter((v): v is number => v !== null && Number.isFinite(v));
      const aucSel = (r.auc ?? []).map((v, i) => (s.selection.has(r.ids[i]) ? v : null)).filter((v): v is number => v !== null && Number.isFinite(v));
      const svg = histogramChart({
        range: [0, 1],
        up: { label: "success per example (balanced acc.)", color: model === "a" ? COLOR_A : COLOR_B, counts, selected: histogram(Float64Array.from(selVals), 0, 1, 20) },
        down: aucVals.length
          ? { label: "AUC per example", color: "#8a94a6", counts: histogram(Float64Array.from(aucVals), 0, 1, 20), selected: histogram(Float64Array.from(aucSel), 0, 1, 20) }
          : { label: "", color: "#fff", counts: new Array(20).fill(0) },
        xLabel: "U-LiRA success",
        height: 160,
        testid: `svg-ulira-${model}`,
        onBrush: (x0, x1) => selectIds(store, r.ids.filter((_, i) => (r.success[i] ?? NaN) >= x0 && (r.success[i] ?? NaN) <= x1)),
      });
      row.append(
        h(
          "div",
          null,
          figure(`ulira-${model}`, `${model.toUpperCase()} ${pair[model].label}`, svg, svgExporter(svg)),
          h(
            "p",
            null,
            "mean success ",
            h("b", { testid: `ulira-${model}-mean`, "data-value": mean }, fmt(mean, 4)),
            selVals.length ? h("span", null, " · selected ", h("b", { testid: `ulira-${model}-selected-mean`, "data-value": selMean }, fmt(selMean, 4))) : null,
            ` · ${vals.filter((v) => v > 0.5).length} of ${vals.length} examples above chance`,
          ),
          h(
            "p",
            { class: "hint", testid: `ulira-${model}-about`, "data-n": r.ids.length },
            `${r.ids.length} forget examples${r.n_shadow ? `, ${r.n_shadow} shadow unlearns vs ${r.n_shadow} shadow retrains` : ""}${r.evaluation ? ` (evaluation ${shortId(r.evaluation)})` : ""}. 0.5 = chance: the attack cannot tell the method's models from retrained ones on that example; 1 = always told apart. Drag across the histogram to select those examples.`,
          ),
          summaryLine(model),
        ),
      );
    }
    uliraBox.append(row);
  }

  function renderAll(s: State) {
    try {
      result = compute(s);
    } catch (e) {
      clear(main);
      main.append(errorBox(e, "attack"));
      return;
    }
    renderControls(s);
    renderModels(s);
  }

  cached<Attack>("/attack", { a: s0.a, b: s0.b }).then(
    (d) => {
      data = d;
      clear(main);
      if (!d.features?.length) {
        main.append(errorBox(new Error("the attack data lists no features"), "attack"));
        return;
      }
      try {
        privacy = {
          a: privacyScore(d.features.map((f) => sweep(build(f).a.sets, bins()))),
          b: privacyScore(d.features.map((f) => sweep(build(f).b.sets, bins()))),
        };
      } catch (e) {
        main.append(errorBox(e, "attack"));
        return;
      }
      controls = h("div", { class: "controls attack-controls", testid: "attack-controls" });
      histBoxes = { a: h("div"), b: h("div") };
      scoreBoxes = { a: h("div", { class: "score-box" }), b: h("div", { class: "score-box" }) };
      stripBoxes = { a: h("div", { class: "strip" }), b: h("div", { class: "strip" }) };
      uliraBox = h("section", { class: "card", testid: "ulira" });
      const modelCard = (model: "a" | "b") =>
        h(
          "section",
          { class: `card model-${model}`, testid: `attack-model-${model}` },
          h("h3", null, h("span", { class: "swatch", style: `background:${model === "a" ? COLOR_A : COLOR_B}` }), `${model.toUpperCase()} · ${pair[model].label}`),
          h("div", { class: "attack-row" }, h("div", null, histBoxes![model], stripBoxes![model]), scoreBoxes![model]),
        );
      main.append(
        h("section", { class: "card" }, h("h3", null, "Attack simulation"), h("p", { class: "hint" }, `Members = the forget set (${d.forget.ids.length}${d.rows ? ` ${d.rows}` : ""}), non-members = the holdout (${d.holdout.ids.length}${d.rows ? ` test ${d.rows}` : ""}). A threshold on one per-example feature flags members; both directions are tried. Privacy score = 1 − the worst attack score over ${d.features.join(", ")}.`), d.about ? h("ul", { class: "hint attack-about", testid: "attack-about" }, d.features.map((f) => h("li", null, h("b", null, f), `: ${d.about?.[f] ?? ""}`))) : null, controls),
        modelCard("a"),
        modelCard("b"),
        uliraBox,
      );
      makeStrips(store.get(), stripBoxes);
      renderAll(store.get());
      renderUlira(store.get());
    },
    (err) => {
      clear(main);
      main.append(errorBox(err, "attack"));
    },
  );

  return {
    update(s: State, prev: State) {
      if (!data) return;
      if (s.feature !== prev.feature && stripBoxes) makeStrips(s, stripBoxes);
      if (s.feature !== prev.feature || s.strategy !== prev.strategy || s.threshold !== prev.threshold || s.selection !== prev.selection) renderAll(s);
      if (s.selection !== prev.selection) {
        strips?.a.setSelection(s.selection);
        strips?.b.setSelection(s.selection);
        renderUlira(s);
        panel.update(s);
      }
    },
    destroy() {
      strips?.a.destroy();
      strips?.b.destroy();
      ctx.cloud("attack-a", null);
      ctx.cloud("attack-b", null);
    },
  };
}

/** A deterministic jitter in [0, 1) per index. */
function jitter(i: number): number {
  let x = (i + 1) * 2654435761;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 2246822519) >>> 0;
  x = (x ^ (x >>> 13)) >>> 0;
  return x / 4294967296;
}
