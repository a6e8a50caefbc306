// The runs screening table's logic (pure): filters, sorting, goal arrows, default pairs.

import type { Column, Goal, RequestRow, Run } from "./api";

export interface Filters {
  task?: string;
  scenario?: string;
  method?: string;
  seed?: string;
}

/** The fixed columns before the metrics. */
export const BASE_COLUMNS: Column[] = [
  { key: "id", label: "run", goal: null, help: "run id" },
  { key: "kind", label: "kind", goal: null },
  { key: "method", label: "method", goal: null },
  { key: "task_label", label: "task", goal: null },
  { key: "scenario_label", label: "scenario", goal: null },
  { key: "seed", label: "seed", goal: null },
  { key: "status", label: "status", goal: null },
];

/** The metric columns shown: the headline ones unless all are asked for (all when none is marked). */
export function metricColumns(columns: Column[], all: boolean): Column[] {
  const head = columns.filter((c) => c.headline);
  return all || head.length === 0 ? columns : head;
}

export function filterRuns(runs: Run[], f: Filters): Run[] {
  return runs.filter(
    (r) =>
      (!f.task || r.task_key === f.task) &&
      (!f.scenario || r.scenario_label === f.scenario) &&
      (!f.method || r.method === f.method) &&
      (!f.seed || String(r.seed) === f.seed),
  );
}

export function cellValue(r: Run, key: string): string | number | null {
  if (key in r.metrics) return r.metrics[key] ?? null;
  const v = (r as unknown as Record<string, unknown>)[key];
  if (v === null || v === undefined) return null;
  return typeof v === "number" ? v : String(v);
}

/** Sort by a column; missing values last in both directions; ties keep the input order. */
export function sortRuns(runs: Run[], key: string | null, dir: "asc" | "desc"): Run[] {
  if (!key) return runs.slice();
  const s = dir === "asc" ? 1 : -1;
  return runs
    .map((r, i) => ({ r, i, v: cellValue(r, key) }))
    .sort((p, q) => {
      const a = p.v;
      const b = q.v;
      const na = a === null || (typeof a === "number" && !Number.isFinite(a));
      const nb = b === null || (typeof b === "number" && !Number.isFinite(b));
      if (na || nb) return na === nb ? p.i - q.i : na ? 1 : -1;
      let c: number;
      if (typeof a === "number" && typeof b === "number") c = a - b;
      else c = String(a).localeCompare(String(b), undefined, { numeric: true });
      return c !== 0 ? s * c : p.i - q.i;
    })
    .map((x) => x.r);
}

export function goalArrow(goal: Goal): { glyph: string; title: string } {
  switch (goal) {
    case "max":
      return { glyph: "↑", title: "higher is better" };
    case "min":
      return { glyph: "↓", title: "lower is better" };
    case "zero":
      return { glyph: "→0", title: "closer to zero is better" };
    case "reference":
      return { glyph: "≈ref", title: "closer to the retrained reference is better" };
    default:
      return { glyph: "", title: "" };
  }
}

/** Distinct values for a filter, as [value, label] sorted by label. */
export function options(runs: Run[], key: keyof Filters): [string, string][] {
  const m = new Map<string, string>();
  for (const r of runs) {
    if (key === "task") m.set(r.task_key, r.task_label || r.task_key);
    else if (key === "scenario") m.set(r.scenario_label, r.scenario_label);
    else if (key === "method") m.set(r.method, r.method);
    else if (r.seed !== null && r.seed !== undefined) m.set(String(r.seed), String(r.seed));
  }
  return [...m.entries()].sort((a, b) => a[1].localeCompare(b[1], undefined, { numeric: true }));
}

/** A run compared with its retrained reference, the default pair. */
export function defaultPair(r: Run): { a: string; b: string } {
  if (r.kind === "reference" && r.parent) return { a: r.parent, b: r.id };
  return { a: r.id, b: `reference:${r.id}` };
}

/** The page's view for a modality (language models have their own). */
export function viewFor(modality: string | undefined): "classifier" | "lm" {
  return modality && /lm|language/i.test(modality) ? "lm" : "classifier";
}

// ---- deletion requests in the screening table -----------------------------------------

/** The run that answers a request (the exact path's after an escalation), or null. */
export function answeringRun(r: RequestRow): string | null {
  return r.run ?? r.escalate_run ?? r.unlearn_run ?? null;
}

/** Every run a request's batch made, in order (its unlearn run, then its escalation). */
export function requestRunIds(r: RequestRow): string[] {
  if (r.runs && r.runs.length) return [...r.runs];
  return [r.unlearn_run, r.escalate_run].filter((x): x is string => typeof x === "string" && x !== "");
}

/** The pair a request opens: its answering run vs that run's retrained reference. */
export function requestPair(r: RequestRow): { a: string; b: string } | null {
  const run = answeringRun(r);
  return run ? { a: run, b: `reference:${run}` } : null;
}

/** run id -> the ids of the requests whose batches made it (in the requests' order). */
export function requestsByRun(rows: RequestRow[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const r of rows)
    for (const run of requestRunIds(r)) {
      const list = m.get(run) ?? [];
      if (!list.includes(r.id)) list.push(r.id);
      m.set(run, list);
    }
  return m;
}

/** Requests whose state or line is the filter's (empty: all); newest first. */
export function filterRequests(rows: RequestRow[], state?: string, line?: string): RequestRow[] {
  return rows.filter((r) => (!state || r.state === state) && (!line || r.line === line)).reverse();
}
