// PNG and SVG export of every plot. SVG plots serialise their element; canvas point clouds
// draw themselves as PNG and emit circles for SVG.

import { h } from "./dom";

export interface Exporter {
  /** a standalone SVG document */
  svg(): string;
  /** a canvas holding the plot (for PNG) */
  canvas(): Promise<HTMLCanvasElement>;
}

// The exporter of each plot hangs off its <figure>; what is on the page is what the document
// holds. A name-keyed registry filled by figure() kept the plots of views already left (and
// of redrawn plots, and of an old view's answers arriving after it unmounted), so the page's
// list of plots and a name's export could be a plot no longer shown.
const exporterOf = new WeakMap<Element, Exporter>();

/** The plots on the page now, by name, in document order: the exporters of the figures
 * figure() made that are in the document (a plot goes with its figure when a view unmounts
 * or redraws it). */
export function exporters(root: ParentNode = document): Map<string, Exporter> {
  const out = new Map<string, Exporter>();
  root.querySelectorAll<HTMLElement>("figure[data-plot]").forEach((f) => {
    const e = exporterOf.get(f);
    const name = f.dataset.plot;
    if (e && name && f.isConnected && !out.has(name)) out.set(name, e);
  });
  return out;
}

export function serializeSvg(svg: SVGSVGElement): string {
  const copy = svg.cloneNode(true) as SVGSVGElement;
  copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  const vb = svg.viewBox.baseVal;
  if (!copy.getAttribute("width") && vb && vb.width) copy.setAttribute("width", String(vb.width));
  if (!copy.getAttribute("height") && vb && vb.height) copy.setAttribute("height", String(vb.height));
  copy.querySelectorAll("[data-noexport]").forEach((n) => n.remove());
  const text = new XMLSerializer().serializeToString(copy);
  return text.startsWith("<?xml") ? text : `<?xml version="1.0" encoding="UTF-8"?>\n${text}`;
}

export function svgExporter(svg: SVGSVGElement): Exporter {
  return {
    svg: () => serializeSvg(svg),
    canvas: () => svgToCanvas(serializeSvg(svg), svg.viewBox.baseVal?.width || svg.clientWidth, svg.viewBox.baseVal?.height || svg.clientHeight),
  };
}

export function svgToCanvas(text: string, width: number, height: number, scale = 2): Promise<HTMLCanvasElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml;charset=utf-8" }));
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = Math.max(1, Math.round(width * scale));
      c.height = Math.max(1, Math.round(height * scale));
      const ctx = c.getContext("2d");
      if (!ctx) return reject(new Error("no 2D canvas"));
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.drawImage(img, 0, 0, c.width, c.height);
      URL.revokeObjectURL(url);
      resolve(c);
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("the SVG could not be drawn"));
    };
    img.src = url;
  });
}

export function download(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, style: "display:none" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function plot(name: string): Exporter {
  const e = exporters().get(name);
  if (!e) throw new Error(`no plot named ${name} on the page`);
  return e;
}

/** Download the PNG of a plot (on the page, by name, or the given exporter). */
export async function exportPng(name: string, e: Exporter = plot(name)): Promise<void> {
  const c = await e.canvas();
  const blob = await new Promise<Blob | null>((r) => c.toBlob(r, "image/png"));
  if (blob) download(`${name}.png`, blob);
}

/** Download the SVG of a plot (on the page, by name, or the given exporter). */
export function exportSvg(name: string, e: Exporter = plot(name)): void {
  download(`${name}.svg`, new Blob([e.svg()], { type: "image/svg+xml" }));
}

/** A titled figure with PNG/SVG buttons (which export this figure's plot); `exporters()`
 * lists it under `name` while it is in the document. */
export function figure(name: string, title: string, body: Node, exporter: Exporter, extra?: Node | null): HTMLElement {
  const err = h("span", { class: "export-error" });
  const guard = (fn: () => unknown) => async () => {
    err.textContent = "";
    try {
      await fn();
    } catch (e) {
      err.textContent = `export failed: ${e instanceof Error ? e.message : String(e)}`;
    }
  };
  const el = h(
    "figure",
    { class: "plot", testid: `plot-${name}`, "data-plot": name },
    h(
      "figcaption",
      null,
      h("span", { class: "title" }, title),
      extra ?? null,
      h(
        "span",
        { class: "exports" },
        h("button", { type: "button", class: "small", testid: `export-png-${name}`, title: "Download PNG", onclick: guard(() => exportPng(name, exporter)) }, "PNG"),
        h("button", { type: "button", class: "small", testid: `export-svg-${name}`, title: "Download SVG", onclick: guard(() => exportSvg(name, exporter)) }, "SVG"),
        err,
      ),
    ),
    body,
  );
  exporterOf.set(el, exporter);
  return el;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] as string);
}
