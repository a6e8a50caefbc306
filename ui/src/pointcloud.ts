// A Canvas 2D point cloud: 10,000+ points drawn per colour in one path each, pan and zoom
// with d3-zoom (wheel always; drag in pan mode or with Shift), rectangle brushing (drag in
// brush mode; Ctrl/Cmd adds to the selection) through a GridIndex, nearest-point hover,
// redraws batched with requestAnimationFrame. Exports PNG (the canvas) and SVG (circles).

import { scaleLinear, type ScaleLinear } from "d3-scale";
import { select } from "d3-selection";
import { zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform } from "d3-zoom";
import { h } from "./dom";
import { escapeXml, type Exporter } from "./export";
import { GridIndex } from "./gridindex";

export interface CloudOptions {
  name: string;
  width: number;
  height: number;
  ids: string[];
  xs: ArrayLike<number>;
  ys: ArrayLike<number>;
  /** palette index per point */
  color: ArrayLike<number>;
  palette: string[];
  /** 1 = draw an outline (e.g. forget-set points) */
  ring?: ArrayLike<number>;
  radius?: number;
  /** keep one scale for both axes (embeddings) */
  equalAspect?: boolean;
  /** fixed data domains (else the extent of the points) */
  xDomain?: [number, number];
  yDomain?: [number, number];
  /** vertical lines in data x (thresholds) */
  vlines?: { x: number; color: string }[];
  /** a tooltip line for point i */
  describe?: (i: number) => string;
  onSelect: (ids: string[], mode: "replace" | "add") => void;
  onHover?: (i: number | null) => void;
}

export interface ScreenPoint {
  id: string;
  x: number;
  y: number;
  selected: boolean;
}

export class PointCloud {
  readonly el: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  mode: "brush" | "pan" = "brush";
  private ctx: CanvasRenderingContext2D | null;
  private sx: ScaleLinear<number, number>;
  private sy: ScaleLinear<number, number>;
  private t: ZoomTransform = zoomIdentity;
  private index: GridIndex;
  private selected = new Uint8Array(0);
  private selectedCount = 0;
  private hover = -1;
  private frame = 0;
  private brushRect: HTMLDivElement;
  private tip: HTMLDivElement;
  private zoomer: ZoomBehavior<HTMLCanvasElement, unknown>;
  private byId = new Map<string, number>();
  private vlines: { x: number; color: string }[];
  readonly dpr: number;

  constructor(private o: CloudOptions) {
    this.dpr = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
    this.canvas = h("canvas", {
      width: Math.round(o.width * this.dpr),
      height: Math.round(o.height * this.dpr),
      style: `width:${o.width}px;height:${o.height}px`,
      testid: `canvas-${o.name}`,
      "data-points": o.ids.length,
    });
    this.ctx = this.canvas.getContext("2d");
    this.brushRect = h("div", { class: "brush-rect", style: "display:none" });
    this.tip = h("div", { class: "cloud-tip", style: "display:none", testid: `tip-${o.name}` });
    this.el = h("div", { class: "cloud", style: `width:${o.width}px;height:${o.height}px`, testid: `cloud-${o.name}` }, this.canvas, this.brushRect, this.tip);
    o.ids.forEach((id, i) => this.byId.set(id, i));
    this.selected = new Uint8Array(o.ids.length);
    this.vlines = o.vlines ?? [];
    const pad = 10;
    let [x0, x1] = o.xDomain ?? extent(o.xs);
    let [y0, y1] = o.yDomain ?? extent(o.ys);
    if (o.equalAspect) {
      const w = o.width - 2 * pad;
      const hh = o.height - 2 * pad;
      const k = Math.max((x1 - x0) / w, (y1 - y0) / hh) || 1;
      const cx = (x0 + x1) / 2;
      const cy = (y0 + y1) / 2;
      [x0, x1] = [cx - (k * w) / 2, cx + (k * w) / 2];
      [y0, y1] = [cy - (k * hh) / 2, cy + (k * hh) / 2];
    }
    this.sx = scaleLinear().domain([x0, x1]).range([pad, o.width - pad]);
    this.sy = scaleLinear().domain([y0, y1]).range([o.height - pad, pad]);
    this.index = new GridIndex(o.xs, o.ys);

    this.zoomer = zoom<HTMLCanvasElement, unknown>()
      .scaleExtent([0.5, 80])
      .filter((ev: Event) => {
        if (ev.type === "wheel" || ev.type === "dblclick") return true;
        const me = ev as MouseEvent;
        return !me.button && (this.mode === "pan" || me.shiftKey) && !me.ctrlKey;
      })
      .on("zoom", (ev: { transform: ZoomTransform }) => {
        this.t = ev.transform;
        this.hideTip();
        this.schedule();
      });
    select(this.canvas).call(this.zoomer).on("dblclick.zoom", null);
    this.canvas.addEventListener("dblclick", () => this.resetZoom());
    this.bindBrush();
    this.draw();
  }

  setSelection(sel: Set<string>): void {
    this.selected.fill(0);
    let n = 0;
    for (const id of sel) {
      const i = this.byId.get(id);
      if (i !== undefined) {
        this.selected[i] = 1;
        n++;
      }
    }
    this.selectedCount = n;
    this.schedule();
  }

  setVlines(v: { x: number; color: string }[]): void {
    this.vlines = v;
    this.schedule();
  }

  /** Highlight one point (driven by the hover in a linked view); -1 for none. */
  setHover(i: number): void {
    if (i === this.hover) return;
    this.hover = i;
    this.schedule();
  }

  indexOf(id: string): number {
    return this.byId.get(id) ?? -1;
  }

  /** Canvas-local pixel position of point i under the current pan/zoom. */
  pixel(i: number): [number, number] {
    return [this.t.applyX(this.sx(this.o.xs[i])), this.t.applyY(this.sy(this.o.ys[i]))];
  }

  resetZoom(): void {
    select(this.canvas).call(this.zoomer.transform, zoomIdentity);
  }

  /** Every point inside the canvas, in viewport (client) coordinates: what a test brushes at. */
  pointsOnScreen(): ScreenPoint[] {
    const r = this.canvas.getBoundingClientRect();
    const out: ScreenPoint[] = [];
    for (let i = 0; i < this.o.ids.length; i++) {
      const [x, y] = this.pixel(i);
      if (x < 0 || y < 0 || x > this.o.width || y > this.o.height || !Number.isFinite(x + y)) continue;
      out.push({ id: this.o.ids[i], x: r.left + x, y: r.top + y, selected: this.selected[i] === 1 });
    }
    return out;
  }

  selectedIds(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.o.ids.length; i++) if (this.selected[i]) out.push(this.o.ids[i]);
    return out;
  }

  /** The ids inside a rectangle given in canvas-local pixels. */
  idsInPixels(px0: number, py0: number, px1: number, py1: number): string[] {
    const x0 = this.sx.invert(this.t.invertX(px0));
    const x1 = this.sx.invert(this.t.invertX(px1));
    const y0 = this.sy.invert(this.t.invertY(py0));
    const y1 = this.sy.invert(this.t.invertY(py1));
    return this.index.query(x0, y0, x1, y1).map((i) => this.o.ids[i]);
  }

  /** The point under a canvas-local pixel (within radius + 3 px), or -1. */
  hit(px: number, py: number): number {
    const r = (this.o.radius ?? 2.2) + 3;
    const x = this.sx.invert(this.t.invertX(px));
    const y = this.sy.invert(this.t.invertY(py));
    const rx = Math.abs(this.sx.invert(this.t.invertX(px + r)) - x);
    const ry = Math.abs(this.sy.invert(this.t.invertY(py + r)) - y);
    return this.index.nearest(x, y, rx, ry);
  }

  private bindBrush(): void {
    let start: [number, number] | null = null;
    let additive = false;
    const local = (e: PointerEvent): [number, number] => {
      const r = this.canvas.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    };
    this.canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || this.mode !== "brush" || e.shiftKey) return;
      start = local(e);
      additive = e.ctrlKey || e.metaKey;
      this.canvas.setPointerCapture?.(e.pointerId);
      e.preventDefault();
    });
    this.canvas.addEventListener("pointermove", (e) => {
      const p = local(e);
      if (start) {
        const [x0, y0] = start;
        Object.assign(this.brushRect.style, {
          display: "block",
          left: `${Math.min(x0, p[0])}px`,
          top: `${Math.min(y0, p[1])}px`,
          width: `${Math.abs(p[0] - x0)}px`,
          height: `${Math.abs(p[1] - y0)}px`,
        });
        return;
      }
      const i = this.hit(p[0], p[1]);
      if (i !== this.hover) {
        this.hover = i;
        this.schedule();
        this.o.onHover?.(i < 0 ? null : i);
      }
      if (i >= 0) this.showTip(i, p);
      else this.hideTip();
    });
    const finish = (e: PointerEvent) => {
      if (!start) return;
      const [x0, y0] = start;
      const [x1, y1] = local(e);
      start = null;
      this.brushRect.style.display = "none";
      if (Math.abs(x1 - x0) < 3 && Math.abs(y1 - y0) < 3) {
        const i = this.hit(x1, y1);
        this.o.onSelect(i >= 0 ? [this.o.ids[i]] : [], additive ? "add" : "replace");
      } else {
        this.o.onSelect(this.idsInPixels(x0, y0, x1, y1), additive ? "add" : "replace");
      }
    };
    this.canvas.addEventListener("pointerup", finish);
    this.canvas.addEventListener("pointercancel", () => {
      start = null;
      this.brushRect.style.display = "none";
    });
    this.canvas.addEventListener("pointerleave", () => {
      if (start) return;
      this.hideTip();
      if (this.hover !== -1) {
        this.hover = -1;
        this.schedule();
        this.o.onHover?.(null);
      }
    });
  }

  private showTip(i: number, p: [number, number]): void {
    const text = this.o.describe ? this.o.describe(i) : this.o.ids[i];
    this.tip.textContent = text;
    this.tip.style.display = "block";
    this.tip.style.left = `${Math.min(p[0] + 12, this.o.width - 160)}px`;
    this.tip.style.top = `${Math.max(0, p[1] - 28)}px`;
  }

  private hideTip(): void {
    this.tip.style.display = "none";
  }

  schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** Draw now (also used for PNG export). */
  draw(ctx: CanvasRenderingContext2D | null = this.ctx, scale = this.dpr): void {
    if (!ctx) return;
    const { width, height, palette } = this.o;
    const n = this.o.ids.length;
    const r = this.o.radius ?? 2.2;
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const px = new Float32Array(n);
    const py = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const [x, y] = this.pixel(i);
      px[i] = x;
      py[i] = y;
    }
    const dim = this.selectedCount > 0;
    ctx.globalAlpha = dim ? 0.18 : 0.8;
    for (let c = 0; c < palette.length; c++) {
      ctx.fillStyle = palette[c];
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (this.o.color[i] !== c) continue;
        const x = px[i];
        const y = py[i];
        if (x < -r || y < -r || x > width + r || y > height + r) continue;
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    if (this.o.ring) {
      ctx.strokeStyle = "#222";
      ctx.lineWidth = 0.7;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (!this.o.ring[i]) continue;
        ctx.moveTo(px[i] + r, py[i]);
        ctx.arc(px[i], py[i], r, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    if (dim) {
      const rs = r + 1.3;
      for (let c = 0; c < palette.length; c++) {
        ctx.fillStyle = palette[c];
        ctx.beginPath();
        for (let i = 0; i < n; i++) {
          if (!this.selected[i] || this.o.color[i] !== c) continue;
          ctx.moveTo(px[i] + rs, py[i]);
          ctx.arc(px[i], py[i], rs, 0, 2 * Math.PI);
        }
        ctx.fill();
      }
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (!this.selected[i]) continue;
        ctx.moveTo(px[i] + rs, py[i]);
        ctx.arc(px[i], py[i], rs, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
    for (const v of this.vlines) {
      const x = this.t.applyX(this.sx(v.x));
      ctx.strokeStyle = v.color;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, height);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (this.hover >= 0 && this.hover < n) {
      ctx.strokeStyle = "#d00";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(px[this.hover], py[this.hover], r + 4, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  exporter(): Exporter {
    return {
      canvas: async () => {
        const c = document.createElement("canvas");
        c.width = this.o.width * 2;
        c.height = this.o.height * 2;
        this.draw(c.getContext("2d"), 2);
        return c;
      },
      svg: () => this.toSvg(),
    };
  }

  /** The visible points as SVG circles (selected ones outlined), thresholds as dashed lines. */
  toSvg(): string {
    const { width, height, palette } = this.o;
    const r = this.o.radius ?? 2.2;
    const dim = this.selectedCount > 0;
    const parts: string[] = [
      `<?xml version="1.0" encoding="UTF-8"?>`,
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
      `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ];
    const circle = (i: number, rad: number, extra: string) => {
      const [x, y] = this.pixel(i);
      if (x < -rad || y < -rad || x > width + rad || y > height + rad) return;
      parts.push(`<circle cx="${x.toFixed(2)}" cy="${y.toFixed(2)}" r="${rad}" fill="${palette[this.o.color[i]] ?? "#888"}"${extra}><title>${escapeXml(this.o.ids[i])}</title></circle>`);
    };
    for (let i = 0; i < this.o.ids.length; i++) {
      const ring = this.o.ring?.[i] ? ` stroke="#222" stroke-width="0.7"` : "";
      circle(i, r, ` fill-opacity="${dim ? 0.18 : 0.8}"${ring}`);
    }
    if (dim) for (let i = 0; i < this.o.ids.length; i++) if (this.selected[i]) circle(i, r + 1.3, ` stroke="#000" stroke-width="1"`);
    for (const v of this.vlines) {
      const x = this.t.applyX(this.sx(v.x)).toFixed(2);
      parts.push(`<line x1="${x}" x2="${x}" y1="0" y2="${height}" stroke="${v.color}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    }
    parts.push("</svg>");
    return parts.join("\n");
  }

  destroy(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    select(this.canvas).on(".zoom", null);
  }
}

function extent(v: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!Number.isFinite(x)) continue;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  return [lo, hi];
}
