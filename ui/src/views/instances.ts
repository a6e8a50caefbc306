// The instance panel: the selected instances' input (image, feature row or text), label,
// and both models' probabilities, predictions and losses.

import { cached, type GraphElement, type InstanceInput, type InstanceRow, type Pair } from "../api";
import { COLOR_A, COLOR_B, probBars } from "../charts";
import { append, clear, errorBox, fmt, h, loading } from "../dom";
import type { State, Store } from "../state";

export const PANEL_LIMIT = 24;

export function drawInput(input: InstanceInput): HTMLElement {
  if (input.kind === "image") {
    const { width, height } = input;
    const ch = input.channels ?? (input.pixels.length === width * height * 3 ? 3 : 1);
    const c = h("canvas", { width, height, class: "digit", testid: "instance-image", "data-width": width, "data-height": height });
    const ctx = c.getContext("2d");
    if (ctx) {
      const img = ctx.createImageData(width, height);
      for (let p = 0; p < width * height; p++) {
        const v = (k: number) => Math.round(255 * Math.max(0, Math.min(1, input.pixels[p * ch + k] ?? 0)));
        const [r, g, b] = ch === 3 ? [v(0), v(1), v(2)] : [255 - v(0), 255 - v(0), 255 - v(0)];
        img.data.set([r, g, b, 255], p * 4);
      }
      ctx.putImageData(img, 0, 0);
    }
    const scale = Math.max(1, Math.floor(64 / Math.max(width, height)));
    c.style.width = `${width * scale}px`;
    c.style.height = `${height * scale}px`;
    return c;
  }
  if (input.kind === "row") {
    const feats = input.features.slice(0, 12);
    return h(
      "table",
      { class: "features", testid: "instance-features", "data-count": input.features.length },
      feats.map(([n, v]) => h("tr", null, h("td", null, n), h("td", { class: "num" }, fmt(v)))),
      input.features.length > 12 ? h("tr", null, h("td", { colspan: 2, class: "hint" }, `+${input.features.length - 12} more`)) : null,
      input.note || !input.features.length ? h("tr", null, h("td", { colspan: 2, class: "hint", testid: "instance-features-note" }, input.note ?? "no features")) : null,
    );
  }
  if (input.kind === "edge") {
    return h("div", { class: "edge-input", testid: "instance-edge", "data-u": input.u, "data-v": input.v }, `${input.u} — ${input.v}`);
  }
  return h("div", { class: "text-input", testid: "instance-text" }, input.text);
}

/** A graph element's line: a node's degree (in the graph, and in the retain graph the models
 * are scored on), an edge's end nodes and their degrees. */
export function graphLine(g: GraphElement): HTMLElement {
  if (g.kind === "edge")
    return h(
      "div",
      { class: "hint graph-line", testid: "instance-graph", "data-kind": g.kind },
      `edge ${g.u}–${g.v} · degrees ${g.degree_u}, ${g.degree_v}${g.in_retain_graph ? "" : " · not in the retain graph"}`,
    );
  return h(
    "div",
    { class: "hint graph-line", testid: "instance-graph", "data-kind": g.kind, "data-degree": g.degree },
    `${g.kind === "features" ? "features of node" : "node"} ${g.node} · degree ${g.degree} (${g.degree_retain} in the retain graph)`,
  );
}

export class InstancePanel {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private head: HTMLElement;
  private token = 0;
  private shown = "";

  constructor(
    private store: Store,
    private pair: Pair,
    private classes: string[],
  ) {
    this.head = h("div", { class: "panel-head" });
    this.body = h("div", { class: "panel-body" });
    this.el = h("aside", { class: "instance-panel", testid: "instance-panel" }, h("h3", null, "Instances"), this.head, this.body);
    this.update(store.get());
  }

  update(s: State): void {
    const ids = [...s.selection].sort();
    const key = `${s.a}|${s.b}|${ids.join(",")}`;
    if (key === this.shown) return;
    this.shown = key;
    clear(this.head);
    append(this.head, [
      h("span", { testid: "selection-count", "data-count": ids.length }, `${ids.length} selected`),
      ids.length
        ? h("button", { type: "button", class: "small", testid: "clear-selection", onclick: () => this.store.set({ selection: [] }) }, "clear")
        : null,
    ]);
    clear(this.body);
    if (!ids.length) {
      this.body.append(h("p", { class: "hint", testid: "instance-empty" }, "Brush points in an embedding, click a prediction-matrix cell or pick points in the attack view to list instances here."));
      return;
    }
    const first = ids.slice(0, PANEL_LIMIT);
    const t = ++this.token;
    this.body.append(loading("instances"));
    cached<{ rows: InstanceRow[] }>("/classifier/instances", { a: s.a, b: s.b, ids: first.join(",") }).then(
      (res) => {
        if (t !== this.token) return;
        clear(this.body);
        if (ids.length > PANEL_LIMIT) this.body.append(h("p", { class: "hint" }, `showing the first ${PANEL_LIMIT} of ${ids.length} (by id)`));
        for (const r of res.rows) this.body.append(this.row(r));
        if (!res.rows.length) this.body.append(h("p", { class: "hint" }, "none of the selected ids is an instance of this task"));
      },
      (e) => {
        if (t !== this.token) return;
        clear(this.body);
        this.body.append(errorBox(e, "instances"));
      },
    );
  }

  private row(r: InstanceRow): HTMLElement {
    const cls = (i: number) => (i < 0 ? "—" : (this.classes[i] ?? String(i)));
    const side = (name: string, color: string, m: InstanceRow["a"]) =>
      h(
        "div",
        { class: "model-line", testid: `instance-${name.toLowerCase()}` },
        h("span", { class: "swatch", style: `background:${color}` }),
        `${name}: pred `,
        h("b", { class: m.pred === r.label ? "ok" : "bad", "data-pred": m.pred }, cls(m.pred)),
        ` · loss `,
        h("span", { "data-loss": m.loss ?? "" }, fmt(m.loss)),
        m.edge_prob != null ? [" · p(edge) ", h("span", { "data-edge-prob": m.edge_prob }, fmt(m.edge_prob))] : null,
      );
    const hasProbs = r.a.probs.length > 0 || r.b.probs.length > 0;
    return h(
      "div",
      { class: "instance-row", testid: "instance-row", "data-id": r.id, "data-split": r.split },
      h("div", { class: "instance-input" }, drawInput(r.input)),
      h(
        "div",
        { class: "instance-info" },
        h("div", null, h("code", null, r.id), " ", h("span", { class: `split split-${r.split}` }, r.split), " label ", h("b", null, cls(r.label))),
        r.graph ? graphLine(r.graph) : null,
        r.note ? h("div", { class: "hint", testid: "instance-note" }, r.note) : null,
        side(this.pair.a.label ? "A" : "A", COLOR_A, r.a),
        side("B", COLOR_B, r.b),
        hasProbs ? probBars({ classes: this.classes, a: r.a.probs, b: r.b.probs, label: r.label }) : null,
      ),
    );
  }
}
