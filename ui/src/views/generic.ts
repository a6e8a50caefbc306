// Tolerant rendering of JSON whose exact shape may grow: tables from arrays of objects,
// key/value tables from objects, and look-ups of the first field that matches a name.

import { fmt, h } from "../dom";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function isObj(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The first value under one of the keys (dotted paths allowed). */
export function pick(o: unknown, ...keys: string[]): Json | undefined {
  for (const k of keys) {
    let cur: unknown = o;
    for (const part of k.split(".")) cur = isObj(cur) ? cur[part] : undefined;
    if (cur !== undefined && cur !== null) return cur as Json;
  }
  return undefined;
}

/** The first array of objects found under the keys, or the value itself when it is one. */
export function rowsOf(o: unknown, ...keys: string[]): Record<string, Json>[] {
  if (Array.isArray(o)) return o.filter(isObj);
  for (const k of keys) {
    const v = pick(o, k);
    if (Array.isArray(v)) return v.filter(isObj);
  }
  return [];
}

export function cellText(v: Json | undefined): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return fmt(v, 4);
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** A table over rows (columns: the union of their scalar keys, in first-seen order). */
export function table(rows: Record<string, Json>[], testid: string, opts: { rowTestid?: string; onRow?: (r: Record<string, Json>) => void; active?: (r: Record<string, Json>) => boolean; columns?: string[] } = {}): HTMLElement {
  const cols: string[] = opts.columns ?? [];
  if (!opts.columns) for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k) && !(isObj(r[k]) || (Array.isArray(r[k]) && (r[k] as Json[]).length > 8))) cols.push(k);
  return h(
    "table",
    { class: "generic", testid },
    h("thead", null, h("tr", null, cols.map((c) => h("th", null, c.replace(/_/g, " "))))),
    h(
      "tbody",
      null,
      rows.map((r) =>
        h(
          "tr",
          {
            testid: opts.rowTestid,
            "data-id": cellText(pick(r, "id", "request_id", "name", "index") ?? null),
            class: `${opts.onRow ? "clickable" : ""} ${opts.active?.(r) ? "active" : ""}`,
            onclick: opts.onRow ? () => opts.onRow!(r) : undefined,
          },
          cols.map((c) => {
            const v = r[c];
            return h("td", { class: typeof v === "number" ? "num" : "", "data-col": c }, cellText(v));
          }),
        ),
      ),
    ),
  );
}

/** A two-column table of an object's scalar fields (nested objects as JSON). */
export function kvTable(o: Record<string, Json>, testid: string): HTMLElement {
  return h(
    "table",
    { class: "generic kv", testid },
    Object.entries(o).map(([k, v]) => h("tr", null, h("th", null, k.replace(/_/g, " ")), h("td", { "data-key": k, class: typeof v === "number" ? "num" : "" }, cellText(v)))),
  );
}
