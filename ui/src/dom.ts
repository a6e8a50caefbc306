// A few DOM helpers (no framework).

import { ApiError } from "./api";

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

/** h("div", {class: "x", testid: "y", onclick: fn}, child, ...) */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "testid") el.setAttribute("data-testid", String(v));
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v as EventListener);
      else if (k === "value" && "value" in el) (el as HTMLInputElement).value = String(v);
      else if (k === "checked" || k === "disabled" || k === "selected") (el as unknown as Record<string, boolean>)[k] = Boolean(v);
      else el.setAttribute(k === "className" ? "class" : k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** A message in place of a view: an error's detail, or a notice. */
export function errorBox(err: unknown, what?: string): HTMLElement {
  let title = "Something went wrong";
  let detail = err instanceof Error ? err.message : String(err);
  let status = "";
  if (err instanceof ApiError) {
    title = err.status === 404 ? "Not available" : err.title || title;
    detail = err.detail;
    status = String(err.status);
  }
  return h(
    "div",
    { class: "message error", testid: "error", role: "alert", "data-status": status },
    h("strong", null, what ? `${what}: ${title}` : title),
    h("p", { testid: "error-detail" }, detail),
  );
}

export function notice(text: string, testid = "notice"): HTMLElement {
  return h("div", { class: "message", testid }, text);
}

export function loading(what: string): HTMLElement {
  return h("div", { class: "loading", testid: "loading" }, `Loading ${what}…`);
}

/**
 * A loading line for something that may take long (a UMAP projection compiling umap-learn,
 * a reference being trained): "Loading <what>…" at once; after `afterMs` a "computing" line
 * with `why` and the seconds waited so far, ticking while the element is on the page.
 * Same `loading` testid as loading(); the extra line is `computing` (data-seconds).
 */
export function computing(what: string, why: string, afterMs = 1200): HTMLElement {
  const el = loading(what);
  const line = h("div", { class: "computing", testid: "computing", "data-seconds": "0" });
  const t0 = Date.now();
  let seen = false;
  const tick = () => {
    const waited = Date.now() - t0;
    if (el.isConnected) seen = true;
    else {
      if (seen || waited > 10_000) clearInterval(timer); // replaced by the answer (or never shown)
      return;
    }
    if (waited < afterMs) return;
    if (!line.isConnected) el.append(line);
    const secs = Math.floor(waited / 1000);
    line.setAttribute("data-seconds", String(secs));
    line.textContent = `computing: ${why} · ${secs} s`;
  };
  const timer = setInterval(tick, 250);
  return el;
}

/** Run an async render into el: a loading line, then the content or the error. */
export async function into(el: HTMLElement, what: string, fn: () => Promise<Node>): Promise<void> {
  clear(el);
  el.append(loading(what));
  try {
    const node = await fn();
    clear(el);
    el.append(node);
  } catch (e) {
    clear(el);
    el.append(errorBox(e, what));
    if (!(e instanceof ApiError)) console.error(e);
  }
}

export function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(2);
  return Number(v.toFixed(digits)).toString();
}

export function shortId(id: string): string {
  const m = /^(reference:|original:)?(.*)$/.exec(id);
  const prefix = m?.[1] ?? "";
  const rest = m?.[2] ?? id;
  // the service's runs: <batch id>-<step> (bat-4d82fd50…-unlearn / -retrain): keep the step
  const step = /^(.+)-([a-z]+)$/.exec(rest);
  if (step && step[1].length > 10) return `${prefix}${step[1].slice(0, 8)}…-${step[2]}`;
  return prefix + (rest.length > 10 ? rest.slice(0, 8) : rest);
}
