// SVG charts drawn with d3 (styles as attributes, so an exported SVG looks like the page).

import { axisBottom, axisLeft } from "d3-axis";
import { brushX, type D3BrushEvent } from "d3-brush";
import { scaleBand, scaleLinear, scaleLog, scaleSequential } from "d3-scale";
import { select, type Selection } from "d3-selection";
import { line } from "d3-shape";
import { max } from "d3-array";

export const COLOR_A = "#3b6fd1";
export const COLOR_B = "#e07b1f";
export const COLOR_FORGET = "#d1495b";
export const COLOR_HOLDOUT = "#2e86ab";
export const COLOR_REF = "#555";
export const CLASS_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#b2df8a", "#fb9a99"];

type G = Selection<SVGGElement, unknown, null, undefined>;
type Svg = Selection<SVGSVGElement, unknown, null, undefined>;

const FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif";

export function svgRoot(width: number, height: number, testid?: string): Svg {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const s = select(el)
    .attr("viewBox", `0 0 ${width} ${height}`)
    .attr("width", width)
    .attr("height", height)
    .attr("font-family", FONT)
    .attr("font-size", 11);
  if (testid) s.attr("data-testid", testid);
  s.append("rect").attr("width", width).attr("height", height).attr("fill", "#fff");
  return s;
}

function axisStyle(g: G): void {
  g.attr("font-family", FONT).attr("font-size", 10);
}

export type LegendItem = { label: string; color: string; dash?: string };

/** Row height of a wrapped legend (px). */
export const LEGEND_ROW = 16;

/** An item's estimated width (swatch, gap, text at 11 px, spacing before the next). */
export function legendItemWidth(label: string): number {
  return 26 + Math.max(30, label.length * 6.2);
}

/** Where each legend item goes, pure: `{dx, row}` per item, a new row whenever the next item
 * would pass `maxWidth` (an item alone on its row always fits there, however long). */
export function legendLayout(labels: string[], maxWidth = Infinity): { dx: number; row: number }[] {
  const out: { dx: number; row: number }[] = [];
  let dx = 0;
  let row = 0;
  for (const label of labels) {
    const w = legendItemWidth(label);
    // the last item needs no spacing after it: its text ends 7 px before w
    if (dx > 0 && dx + w - 7 > maxWidth) {
      row++;
      dx = 0;
    }
    out.push({ dx, row });
    dx += w;
  }
  return out;
}

/** A legend at (x, y); items wrap onto rows of LEGEND_ROW px within `maxWidth`. Returns the
 * number of rows. */
export function legend(svg: Svg, x: number, y: number, items: LegendItem[], maxWidth = Infinity): number {
  const g = svg.append("g").attr("transform", `translate(${x},${y})`).attr("data-testid", "legend");
  const at = legendLayout(
    items.map((it) => it.label),
    maxWidth,
  );
  items.forEach((it, i) => {
    const { dx, row } = at[i];
    const dy = row * LEGEND_ROW;
    if (it.dash !== undefined) {
      g.append("line").attr("x1", dx).attr("x2", dx + 16).attr("y1", dy).attr("y2", dy).attr("stroke", it.color).attr("stroke-width", 2).attr("stroke-dasharray", it.dash || null);
    } else {
      g.append("rect").attr("x", dx).attr("y", dy - 5).attr("width", 10).attr("height", 10).attr("fill", it.color);
    }
    g.append("text").attr("x", dx + 19).attr("y", dy + 4).attr("fill", "#222").text(it.label);
  });
  return at.length ? at[at.length - 1].row + 1 : 0;
}

// ------------------------------------------------------------------ grouped bars
export interface BarSeries {
  label: string;
  color: string;
  values: (number | null)[];
}

export function groupedBars(o: {
  categories: string[];
  series: BarSeries[];
  marked?: Set<number>;
  markLabel?: string;
  yDomain?: [number, number];
  yLabel?: string;
  width?: number;
  height?: number;
  testid?: string;
}): SVGSVGElement {
  const width = o.width ?? Math.max(560, 60 + o.categories.length * (14 * o.series.length + 12));
  const height = o.height ?? 230;
  const m = { t: 26, r: 10, b: 42, l: 44 };
  const svg = svgRoot(width, height, o.testid);
  const x = scaleBand<number>().domain(o.categories.map((_, i) => i)).range([m.l, width - m.r]).padding(0.18);
  const xi = scaleBand<number>().domain(o.series.map((_, i) => i)).range([0, x.bandwidth()]).padding(0.08);
  const y = scaleLinear().domain(o.yDomain ?? [0, 1]).nice().range([height - m.b, m.t]);
  if (o.marked) {
    for (const c of o.marked) {
      const x0 = x(c);
      if (x0 === undefined) continue;
      svg.append("rect").attr("x", x0 - 3).attr("y", m.t).attr("width", x.bandwidth() + 6).attr("height", height - m.b - m.t).attr("fill", "#fde2e4").attr("data-forget-class", c);
    }
  }
  o.series.forEach((s, si) => {
    s.values.forEach((v, ci) => {
      if (v === null || !Number.isFinite(v)) return;
      svg
        .append("rect")
        .attr("x", (x(ci) ?? 0) + (xi(si) ?? 0))
        .attr("y", y(Math.max(v, y.domain()[0])))
        .attr("width", xi.bandwidth())
        .attr("height", Math.max(0, y(y.domain()[0]) - y(Math.max(v, y.domain()[0]))))
        .attr("fill", s.color)
        .append("title")
        .text(`${o.categories[ci]} · ${s.label}: ${v.toFixed(3)}`);
    });
  });
  const gx = svg.append("g").attr("transform", `translate(0,${height - m.b})`).call(axisBottom(x).tickFormat((i) => o.categories[i as number] ?? ""));
  axisStyle(gx);
  if (o.categories.length > 12) gx.selectAll("text").attr("transform", "rotate(-40)").attr("text-anchor", "end");
  if (o.marked) gx.selectAll<SVGTextElement, number>("text").attr("font-weight", (d) => (o.marked!.has(d) ? "bold" : null)).attr("fill", (d) => (o.marked!.has(d) ? COLOR_FORGET : "currentColor"));
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(y).ticks(5)));
  if (o.yLabel) svg.append("text").attr("x", 6).attr("y", 14).attr("fill", "#444").text(o.yLabel);
  const items = o.series.map((s) => ({ label: s.label, color: s.color }));
  if (o.marked && o.marked.size) items.push({ label: o.markLabel ?? "forget class", color: "#fde2e4" });
  legend(svg, m.l + 70, 12, items);
  return svg.node()!;
}

// ------------------------------------------------------------------ matrix
export function matrixChart(o: {
  classes: string[];
  counts: number[][];
  color: string;
  marked?: Set<number>;
  selected?: number[][] | null;
  active?: [number, number] | null;
  onCell?: (i: number, j: number) => void;
  testid?: string;
  title?: string;
}): SVGSVGElement {
  const k = o.classes.length;
  const cell = Math.max(14, Math.min(34, Math.floor(320 / Math.max(1, k))));
  const m = { t: 30, r: 10, b: 40, l: 52 };
  const width = m.l + k * cell + m.r;
  const height = m.t + k * cell + m.b;
  const svg = svgRoot(width, height, o.testid);
  const vmax = Math.max(1, max(o.counts.flat()) ?? 1);
  const shade = scaleSequential((t: number) => mix("#ffffff", o.color, t)).domain([0, Math.log1p(vmax)]);
  const g = svg.append("g").attr("transform", `translate(${m.l},${m.t})`);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = o.counts[i]?.[j] ?? 0;
      const sel = o.selected?.[i]?.[j] ?? 0;
      const r = g
        .append("rect")
        .attr("x", j * cell)
        .attr("y", i * cell)
        .attr("width", cell - 1)
        .attr("height", cell - 1)
        .attr("fill", shade(Math.log1p(v)))
        .attr("stroke", o.active && o.active[0] === i && o.active[1] === j ? "#000" : sel > 0 ? "#111" : "none")
        .attr("stroke-width", o.active && o.active[0] === i && o.active[1] === j ? 2 : 1)
        .attr("data-testid", "matrix-cell")
        .attr("data-true", i)
        .attr("data-pred", j)
        .attr("data-count", v)
        .attr("cursor", o.onCell ? "pointer" : null);
      r.append("title").text(`true ${o.classes[i]} → predicted ${o.classes[j]}: ${v}${sel ? ` (${sel} selected)` : ""}`);
      if (o.onCell) r.on("click", () => o.onCell!(i, j));
      if (cell >= 20 && v > 0) {
        g.append("text")
          .attr("x", j * cell + cell / 2 - 0.5)
          .attr("y", i * cell + cell / 2 + 3.5)
          .attr("text-anchor", "middle")
          .attr("font-size", v >= 1000 ? 8 : 9.5)
          .attr("fill", Math.log1p(v) / Math.log1p(vmax) > 0.6 ? "#fff" : "#222")
          .attr("pointer-events", "none")
          .text(sel > 0 ? `${v}·${sel}` : String(v));
      }
    }
  }
  const lab = (i: number) => o.classes[i] ?? String(i);
  for (let i = 0; i < k; i++) {
    const forget = o.marked?.has(i);
    g.append("text").attr("x", -4).attr("y", i * cell + cell / 2 + 3).attr("text-anchor", "end").attr("font-size", 9.5).attr("fill", forget ? COLOR_FORGET : "#222").attr("font-weight", forget ? "bold" : null).text(lab(i).slice(0, 8));
    g.append("text").attr("x", i * cell + cell / 2).attr("y", k * cell + 12).attr("text-anchor", "middle").attr("font-size", 9.5).attr("fill", forget ? COLOR_FORGET : "#222").attr("font-weight", forget ? "bold" : null).text(lab(i).slice(0, 5));
  }
  svg.append("text").attr("x", m.l + (k * cell) / 2).attr("y", height - 6).attr("text-anchor", "middle").attr("fill", "#444").text("predicted");
  svg.append("text").attr("transform", `translate(12,${m.t + (k * cell) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", "#444").text("true");
  if (o.title) svg.append("text").attr("x", m.l).attr("y", 16).attr("fill", o.color).attr("font-weight", "bold").text(o.title);
  return svg.node()!;
}

export function mix(a: string, b: string, t: number): string {
  const pa = parseHex(a);
  const pb = parseHex(b);
  const c = pa.map((v, i) => Math.round(v + (pb[i] - v) * Math.max(0, Math.min(1, t))));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function parseHex(s: string): number[] {
  const v = s.replace("#", "");
  return [0, 2, 4].map((i) => parseInt(v.slice(i, i + 2), 16));
}

// ------------------------------------------------------------------ lines
export interface LineSeries {
  label: string;
  color: string;
  values: (number | null)[];
  dash?: string;
}

export function lineChart(o: {
  xLabels: string[];
  series: LineSeries[];
  yDomain?: [number, number];
  yLabel?: string;
  width?: number;
  height?: number;
  testid?: string;
}): SVGSVGElement {
  const width = o.width ?? Math.max(380, 80 + o.xLabels.length * 60);
  const items = o.series.map((s) => ({ label: s.label, color: s.color, dash: s.dash ?? "" }));
  const m = { t: 40, r: 16, b: 50, l: 44 };
  // the legend wraps within the chart's width; each extra row moves the plot down
  const layout = legendLayout(
    items.map((it) => it.label),
    width - m.l - m.r,
  );
  const rows = layout.length ? layout[layout.length - 1].row + 1 : 1;
  m.t += (rows - 1) * LEGEND_ROW;
  const height = (o.height ?? 240) + (rows - 1) * LEGEND_ROW;
  const svg = svgRoot(width, height, o.testid);
  const x = scaleLinear().domain([0, Math.max(1, o.xLabels.length - 1)]).range([m.l + 10, width - m.r - 10]);
  const y = scaleLinear().domain(o.yDomain ?? [0, 1]).range([height - m.b, m.t]);
  const gx = svg
    .append("g")
    .attr("transform", `translate(0,${height - m.b})`)
    .call(
      axisBottom(x)
        .tickValues(o.xLabels.map((_, i) => i))
        .tickFormat((i) => truncate(o.xLabels[i as number] ?? "", 12)),
    );
  axisStyle(gx);
  gx.selectAll("text").attr("transform", "rotate(-25)").attr("text-anchor", "end");
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(y).ticks(5)));
  if (o.yLabel) svg.append("text").attr("x", 6).attr("y", m.t - 10).attr("fill", "#444").text(o.yLabel);
  for (const s of o.series) {
    const pts = s.values.map((v, i) => [i, v] as [number, number | null]).filter((p): p is [number, number] => p[1] !== null && Number.isFinite(p[1]));
    svg
      .append("path")
      .attr("d", line<[number, number]>().x((p) => x(p[0])).y((p) => y(p[1]))(pts) ?? "")
      .attr("fill", "none")
      .attr("stroke", s.color)
      .attr("stroke-width", 2)
      .attr("stroke-dasharray", s.dash || null);
    for (const p of pts)
      svg
        .append("circle")
        .attr("cx", x(p[0]))
        .attr("cy", y(p[1]))
        .attr("r", 3)
        .attr("fill", s.color)
        .append("title")
        .text(`${s.label} · ${o.xLabels[p[0]]}: ${p[1].toFixed(3)}`);
  }
  legend(svg, m.l, 14, items, width - m.l - m.r);
  return svg.node()!;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `…${s.slice(s.length - n + 1)}` : s;
}

// ------------------------------------------------------------------ mirrored histogram
export interface HistSide {
  label: string;
  color: string;
  counts: number[];
  selected?: number[];
}

export function histogramChart(o: {
  range: [number, number];
  up: HistSide;
  down: HistSide;
  threshold?: number | null;
  memberSide?: "above" | "below";
  xLabel?: string;
  width?: number;
  height?: number;
  testid?: string;
  onBrush?: (x0: number, x1: number) => void;
  onBin?: (side: "up" | "down", bin: number) => void;
}): SVGSVGElement {
  const width = o.width ?? 460;
  const height = o.height ?? 220;
  const m = { t: 24, r: 12, b: 34, l: 44 };
  const svg = svgRoot(width, height, o.testid);
  const nb = o.up.counts.length;
  const x = scaleLinear().domain(o.range).range([m.l, width - m.r]);
  const mid = m.t + (height - m.t - m.b) / 2;
  const fu = o.up.counts.map((c) => c / Math.max(1, sum(o.up.counts)));
  const fd = o.down.counts.map((c) => c / Math.max(1, sum(o.down.counts)));
  const ymax = Math.max(1e-9, ...fu, ...fd);
  const hy = scaleLinear().domain([0, ymax]).range([0, mid - m.t]);
  const bw = (o.range[1] - o.range[0]) / nb;
  if (o.threshold !== null && o.threshold !== undefined && Number.isFinite(o.threshold)) {
    const tx = x(o.threshold);
    const [sx0, sx1] = o.memberSide === "below" ? [m.l, tx] : [tx, width - m.r];
    svg.append("rect").attr("x", sx0).attr("y", m.t).attr("width", Math.max(0, sx1 - sx0)).attr("height", height - m.t - m.b).attr("fill", "#f6efe0").attr("data-member-side", o.memberSide ?? "above");
  }
  const side = (s: HistSide, f: number[], dir: 1 | -1, key: "up" | "down") => {
    const total = Math.max(1, sum(s.counts));
    f.forEach((v, i) => {
      const x0 = x(o.range[0] + i * bw);
      const w = Math.max(0.5, x(o.range[0] + (i + 1) * bw) - x0 - 0.5);
      const hgt = hy(v);
      const r = svg
        .append("rect")
        .attr("x", x0)
        .attr("y", dir === 1 ? mid - hgt : mid)
        .attr("width", w)
        .attr("height", hgt)
        .attr("fill", s.color)
        .attr("fill-opacity", s.selected && sum(s.selected) > 0 ? 0.35 : 0.8)
        .attr("data-bin", i)
        .attr("data-side", key);
      r.append("title").text(`${s.label}: ${s.counts[i]} in [${(o.range[0] + i * bw).toFixed(3)}, ${(o.range[0] + (i + 1) * bw).toFixed(3)})`);
      const sel = s.selected?.[i] ?? 0;
      if (sel > 0) {
        const hs = hy(sel / total);
        svg.append("rect").attr("x", x0).attr("y", dir === 1 ? mid - hs : mid).attr("width", w).attr("height", hs).attr("fill", s.color).attr("stroke", "#000").attr("stroke-width", 0.6).attr("pointer-events", "none").attr("data-selected-bin", i);
      }
    });
  };
  side(o.up, fu, 1, "up");
  side(o.down, fd, -1, "down");
  svg.append("line").attr("x1", m.l).attr("x2", width - m.r).attr("y1", mid).attr("y2", mid).attr("stroke", "#999");
  axisStyle(svg.append("g").attr("transform", `translate(0,${height - m.b})`).call(axisBottom(x).ticks(8)));
  const pct = (v: unknown) => `${Math.round(Number(v) * 100)}%`;
  const yu = scaleLinear().domain([0, ymax]).range([mid, m.t]);
  const yd = scaleLinear().domain([0, ymax]).range([mid, height - m.b]);
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(yu).ticks(3).tickFormat(pct)));
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(yd).ticks(3).tickFormat(pct)));
  if (o.threshold !== null && o.threshold !== undefined && Number.isFinite(o.threshold)) {
    const tx = x(o.threshold);
    svg.append("line").attr("x1", tx).attr("x2", tx).attr("y1", m.t - 4).attr("y2", height - m.b).attr("stroke", "#000").attr("stroke-width", 1.5).attr("stroke-dasharray", "4 3").attr("data-testid", "threshold-line").attr("data-threshold", o.threshold);
    svg.append("text").attr("x", tx + 3).attr("y", m.t + 8).attr("font-size", 10).attr("fill", "#000").text(`t = ${o.threshold.toFixed(3)}`);
  }
  if (o.xLabel) svg.append("text").attr("x", width - m.r).attr("y", height - 4).attr("text-anchor", "end").attr("fill", "#444").text(o.xLabel);
  legend(svg, m.l + 4, 12, [
    { label: o.up.label, color: o.up.color },
    { label: o.down.label, color: o.down.color },
  ]);
  if (o.onBrush || o.onBin) {
    const g = svg.append("g").attr("data-noexport", "").attr("data-testid", "histogram-brush");
    const b = brushX()
      .extent([
        [m.l, m.t],
        [width - m.r, height - m.b],
      ])
      .on("end", (ev: D3BrushEvent<unknown>) => {
        const se = ev.sourceEvent as MouseEvent | undefined;
        if (!se) return;
        if (ev.selection) {
          const [a, c] = ev.selection as [number, number];
          g.call(b.move, null);
          o.onBrush?.(x.invert(a), x.invert(c));
        } else if (o.onBin) {
          const r = (svg.node() as SVGSVGElement).getBoundingClientRect();
          const px = ((se.clientX - r.left) * width) / (r.width || width);
          const py = ((se.clientY - r.top) * height) / (r.height || height);
          const bin = Math.floor((x.invert(px) - o.range[0]) / bw);
          if (bin >= 0 && bin < nb) o.onBin(py < mid ? "up" : "down", bin);
        }
      });
    g.call(b);
  }
  return svg.node()!;
}

function sum(a: number[]): number {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

// ------------------------------------------------------------------ scatter
export interface ScatterPoint {
  id: string;
  x: number;
  y: number;
  label: string;
  color: string;
  highlight?: boolean;
}

export function scatterChart(o: {
  points: ScatterPoint[];
  xLabel: string;
  yLabel: string;
  yLog?: boolean;
  xDomain?: [number, number];
  width?: number;
  height?: number;
  testid?: string;
  onClick?: (p: ScatterPoint) => void;
}): SVGSVGElement {
  const width = o.width ?? 520;
  const height = o.height ?? 320;
  const m = { t: 20, r: 20, b: 44, l: 60 };
  const svg = svgRoot(width, height, o.testid);
  const xs = o.points.map((p) => p.x);
  const ys = o.points.map((p) => p.y);
  const xd = o.xDomain ?? padDomain(Math.min(...xs), Math.max(...xs));
  const x = scaleLinear().domain(xd).range([m.l, width - m.r]).nice();
  const positive = ys.filter((v) => v > 0);
  const useLog = Boolean(o.yLog) && positive.length === ys.length && ys.length > 0;
  const y = useLog
    ? scaleLog().domain([Math.min(...positive) / 2, Math.max(1, Math.max(...positive))]).range([height - m.b, m.t]).nice()
    : scaleLinear().domain(padDomain(Math.min(...ys), Math.max(...ys))).range([height - m.b, m.t]).nice();
  axisStyle(svg.append("g").attr("transform", `translate(0,${height - m.b})`).call(axisBottom(x).ticks(6)));
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(y as unknown as ReturnType<typeof scaleLinear<number, number>>).ticks(6, useLog ? ".0e" : undefined)));
  svg.append("text").attr("x", (m.l + width - m.r) / 2).attr("y", height - 8).attr("text-anchor", "middle").attr("fill", "#444").text(o.xLabel);
  svg.append("text").attr("transform", `translate(14,${(m.t + height - m.b) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", "#444").text(o.yLabel + (useLog ? " (log)" : ""));
  for (const p of o.points) {
    const c = svg
      .append("circle")
      .attr("cx", x(p.x))
      .attr("cy", y(p.y))
      .attr("r", p.highlight ? 7 : 5)
      .attr("fill", p.color)
      .attr("fill-opacity", 0.85)
      .attr("stroke", p.highlight ? "#000" : "#fff")
      .attr("stroke-width", p.highlight ? 2 : 1)
      .attr("data-testid", "scatter-point")
      .attr("data-id", p.id)
      .attr("cursor", o.onClick ? "pointer" : null);
    c.append("title").text(`${p.label}\n${o.xLabel}: ${p.x}\n${o.yLabel}: ${p.y}`);
    if (o.onClick) c.on("click", () => o.onClick!(p));
  }
  return svg.node()!;
}

function padDomain(lo: number, hi: number): [number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const p = (hi - lo) * 0.06;
  return [lo - p, hi + p];
}

// ------------------------------------------------------------------ token bars
export function tokenBars(o: { tokens: string[]; series: { label: string; color: string; values: (number | null)[] }[]; width?: number; testid?: string }): SVGSVGElement {
  const n = o.tokens.length;
  const bar = 22;
  const width = o.width ?? Math.max(520, 60 + n * (bar + 4));
  const height = 210;
  const m = { t: 26, r: 10, b: 60, l: 50 };
  const svg = svgRoot(width, height, o.testid);
  const x = scaleBand<number>().domain(o.tokens.map((_, i) => i)).range([m.l, width - m.r]).padding(0.15);
  const xi = scaleBand<number>().domain(o.series.map((_, i) => i)).range([0, x.bandwidth()]).padding(0.05);
  const all = o.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const ext = Math.max(0.1, ...all.map(Math.abs));
  const y = scaleLinear().domain([-ext, ext]).nice().range([height - m.b, m.t]);
  o.series.forEach((s, si) =>
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      svg
        .append("rect")
        .attr("x", (x(i) ?? 0) + (xi(si) ?? 0))
        .attr("y", Math.min(y(v), y(0)))
        .attr("width", xi.bandwidth())
        .attr("height", Math.abs(y(v) - y(0)))
        .attr("fill", s.color)
        .append("title")
        .text(`${JSON.stringify(o.tokens[i])} · ${s.label}: ${v.toFixed(3)}`);
    }),
  );
  svg.append("line").attr("x1", m.l).attr("x2", width - m.r).attr("y1", y(0)).attr("y2", y(0)).attr("stroke", "#888");
  const gx = svg.append("g").attr("transform", `translate(0,${height - m.b})`).call(axisBottom(x).tickFormat((i) => truncate(o.tokens[i as number] ?? "", 10)));
  axisStyle(gx);
  gx.selectAll("text").attr("transform", "rotate(-45)").attr("text-anchor", "end");
  axisStyle(svg.append("g").attr("transform", `translate(${m.l},0)`).call(axisLeft(y).ticks(5)));
  legend(svg, m.l, 12, o.series.map((s) => ({ label: s.label, color: s.color })));
  return svg.node()!;
}

/** Small horizontal probability bars for the instance panel (both models). */
export function probBars(o: { classes: string[]; a: (number | null)[]; b: (number | null)[]; label: number; width?: number }): SVGSVGElement {
  const k = Math.max(o.a.length, o.b.length);
  const row = 11;
  const width = o.width ?? 190;
  const height = k * row + 4;
  const svg = svgRoot(width, height);
  const x = scaleLinear().domain([0, 1]).range([0, width - 56]);
  for (let c = 0; c < k; c++) {
    const y0 = 2 + c * row;
    svg.append("text").attr("x", 0).attr("y", y0 + 8).attr("font-size", 9).attr("fill", c === o.label ? "#000" : "#666").attr("font-weight", c === o.label ? "bold" : null).text((o.classes[c] ?? String(c)).slice(0, 7));
    const pa = o.a[c] ?? 0;
    const pb = o.b[c] ?? 0;
    svg.append("rect").attr("x", 44).attr("y", y0).attr("width", x(pa)).attr("height", 4.5).attr("fill", COLOR_A).append("title").text(`A ${pa.toFixed(3)}`);
    svg.append("rect").attr("x", 44).attr("y", y0 + 5).attr("width", x(pb)).attr("height", 4.5).attr("fill", COLOR_B).append("title").text(`B ${pb.toFixed(3)}`);
  }
  return svg.node()!;
}
