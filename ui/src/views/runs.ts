// The runs screening table: filter, sort (goal arrow per column), pick two runs to compare.

import { cached, type Run, type RunsResponse } from "../api";
import { clear, fmt, h, notice, shortId } from "../dom";
import { BASE_COLUMNS, cellValue, metricColumns, defaultPair, filterRuns, goalArrow, options, sortRuns, viewFor, type Filters } from "../runsTable";
import type { Ctx, ViewHandle } from "./common";

export function mountRuns(el: HTMLElement, ctx: Ctx, data: RunsResponse): ViewHandle {
  const { store } = ctx;
  const filters: Filters = {};
  let sortKey: string | null = "created_at";
  let sortDir: "asc" | "desc" = "desc";
  let pickA: string | null = store.get().a;
  let pickB: string | null = store.get().b;
  const runs = data.runs;
  let allMetrics = false;
  let columns = [...BASE_COLUMNS, ...metricColumns(data.columns, allMetrics)];

  if (runs.length === 0) {
    el.append(
      notice(
        "This workspace has no runs yet. Train and unlearn first (`unlearnkit demo`, or `unlearnkit train` then `unlearnkit unlearn --from <run> --method <name> --evaluate`), then reload this page.",
        "empty-workspace",
      ),
    );
    return { update() {}, destroy() {} };
  }

  const filterBar = h("div", { class: "filters", testid: "runs-filters" });
  const tableBox = h("div", { class: "table-box" });
  const pickBar = h("div", { class: "pick-bar", testid: "pick-bar" });
  el.append(h("h2", null, "Runs"), filterBar, pickBar, tableBox);

  for (const key of ["task", "scenario", "method", "seed"] as (keyof Filters)[]) {
    const sel = h(
      "select",
      {
        testid: `filter-${key}`,
        onchange: (e: Event) => {
          filters[key] = (e.target as HTMLSelectElement).value || undefined;
          renderTable();
        },
      },
      h("option", { value: "" }, `all`),
      options(runs, key).map(([v, label]) => h("option", { value: v }, label)),
    );
    filterBar.append(h("label", null, `${key} `, sel));
  }
  if (data.columns.some((c) => c.headline) && data.columns.some((c) => !c.headline))
    filterBar.append(
      h(
        "label",
        null,
        h("input", {
          type: "checkbox",
          testid: "toggle-all-metrics",
          onchange: (e: Event) => {
            allMetrics = (e.target as HTMLInputElement).checked;
            columns = [...BASE_COLUMNS, ...metricColumns(data.columns, allMetrics)];
            renderTable();
          },
        }),
        " all metrics",
      ),
    );

  function compare(a: string, b: string) {
    const run = runs.find((r) => r.id === a) ?? runs.find((r) => a.endsWith(r.id));
    store.set({ a, b, view: viewFor(run?.modality), selection: [] });
  }

  function renderPick() {
    clear(pickBar);
    pickBar.append(
      h("span", null, "A: ", h("code", { testid: "pick-a" }, pickA ? shortId(pickA) : "—"), "  B: ", h("code", { testid: "pick-b" }, pickB ? shortId(pickB) : "—"), " "),
      h(
        "button",
        {
          type: "button",
          testid: "compare",
          disabled: !(pickA && pickB) || pickA === pickB,
          onclick: () => pickA && pickB && compare(pickA, pickB),
        },
        "Compare A and B",
      ),
      h("span", { class: "hint" }, " or click “vs reference” on a run (its retrained reference is the default B)."),
    );
  }

  function header(c: (typeof columns)[number]) {
    const arrow = goalArrow(c.goal);
    const active = sortKey === c.key;
    return h(
      "th",
      {
        testid: `sort-${c.key}`,
        "data-key": c.key,
        "data-goal": c.goal ?? "",
        title: [c.help, arrow.title, c.unit ? `unit: ${c.unit}` : ""].filter(Boolean).join(" · "),
        class: active ? `sorted ${sortDir}` : "",
        onclick: () => {
          if (sortKey === c.key) sortDir = sortDir === "asc" ? "desc" : "asc";
          else {
            sortKey = c.key;
            sortDir = c.goal === "min" || c.goal === "zero" ? "asc" : "desc";
          }
          renderTable();
        },
      },
      c.label,
      arrow.glyph ? h("span", { class: "goal", testid: "goal-arrow" }, ` ${arrow.glyph}`) : null,
      active ? h("span", { class: "dir" }, sortDir === "asc" ? " ▲" : " ▼") : null,
    );
  }

  function row(r: Run) {
    const radio = (which: "a" | "b") =>
      h("input", {
        type: "radio",
        name: `pick-${which}`,
        testid: `pick-${which}-radio`,
        title: `model ${which.toUpperCase()}`,
        checked: (which === "a" ? pickA : pickB) === r.id,
        onchange: () => {
          if (which === "a") pickA = r.id;
          else pickB = r.id;
          renderPick();
        },
      });
    const cells = columns.map((c) => {
      if (c.key === "id") return h("td", { class: "mono", title: r.id }, shortId(r.id));
      const v = cellValue(r, c.key);
      return h("td", { class: typeof v === "number" ? "num" : "" }, typeof v === "number" ? fmt(v) : (v ?? "–"));
    });
    const current = store.get();
    return h(
      "tr",
      {
        testid: "run-row",
        "data-id": r.id,
        "data-kind": r.kind,
        class: [current.a === r.id ? "is-a" : "", current.b === r.id ? "is-b" : "", r.artifact_present ? "" : "missing"].join(" "),
        title: r.error ? `failed: ${r.error}` : r.artifact_present ? "" : "this run's model artifact is missing",
      },
      h("td", null, radio("a")),
      h("td", null, radio("b")),
      cells,
      h(
        "td",
        null,
        r.kind !== "reference"
          ? h(
              "button",
              {
                type: "button",
                class: "small",
                testid: "compare-ref",
                onclick: () => {
                  const p = defaultPair(r);
                  compare(p.a, p.b);
                },
              },
              "vs reference",
            )
          : null,
      ),
    );
  }

  function renderTable() {
    const shown = sortRuns(filterRuns(runs, filters), sortKey === "created_at" ? "created_at" : sortKey, sortDir);
    clear(tableBox);
    tableBox.append(
      h(
        "table",
        { class: "runs", testid: "runs-table" },
        h("thead", null, h("tr", null, h("th", null, "A"), h("th", null, "B"), columns.map(header), h("th", null, ""))),
        h("tbody", null, shown.map(row)),
      ),
      h("div", { class: "hint", testid: "runs-count" }, `${shown.length} of ${runs.length} runs`),
    );
  }

  renderPick();
  renderTable();
  return { update() {}, destroy() {} };
}

export async function loadRuns(): Promise<RunsResponse> {
  return cached<RunsResponse>("/runs");
}
