// The runs screening table: filter, sort (goal arrow per column), pick two runs to compare.

import { cached, type RequestRow, type RequestsResponse, type Run, type RunsResponse, type Workspace } from "../api";
import { clear, errorBox, fmt, h, loading, notice, shortId } from "../dom";
import {
  BASE_COLUMNS,
  answeringRun,
  cellValue,
  defaultPair,
  filterRequests,
  filterRuns,
  goalArrow,
  metricColumns,
  options,
  requestPair,
  requestRunIds,
  requestsByRun,
  sortRuns,
  viewFor,
  type Filters,
} from "../runsTable";
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
  let requests: RequestRow[] = [];
  let byRun = new Map<string, string[]>();
  let requestState = "";
  let showAllRequests = false;

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
  const requestsBox = h("section", { class: "runs-requests", testid: "runs-requests" });
  el.append(h("h2", null, "Runs"), filterBar, pickBar, tableBox, requestsBox);

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

  /** A request's answering run vs its reference, in the request's own view. */
  function openRequest(req: RequestRow) {
    const p = requestPair(req);
    store.set({ ...(p ?? {}), request: req.id, view: "requests", selection: [] });
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

  /** The deletion requests a run was made for (the service's batch runs), as links. */
  function requestBadges(r: Run) {
    return (byRun.get(r.id) ?? []).map((rid) =>
      h(
        "button",
        {
          type: "button",
          class: "small request-badge",
          testid: "run-request",
          "data-id": rid,
          title: `made for deletion request ${rid}: open the request (its answering run vs its reference)`,
          onclick: () => {
            const req = requests.find((q) => q.id === rid);
            if (req) openRequest(req);
          },
        },
        `request ${rid.replace(/^req-/, "").slice(0, 6)}`,
      ),
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
      if (c.key === "id") return h("td", { class: "mono", title: r.id }, shortId(r.id), requestBadges(r));
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

  // ------------------------------------------------------------ deletion requests
  function requestRow(q: RequestRow) {
    const run = answeringRun(q);
    const cur = store.get();
    const link = (id: string) =>
      h(
        "button",
        {
          type: "button",
          class: "small link mono",
          testid: "request-run-link",
          "data-id": id,
          "data-present": String(runs.some((r) => r.id === id)),
          title: `${id === q.escalate_run ? "the exact path's run (after the gate failed)" : "the batch's unlearn run"}: compare it with its reference`,
          onclick: (e: Event) => {
            e.stopPropagation();
            compare(id, `reference:${id}`);
          },
        },
        shortId(id),
        id === q.escalate_run ? " (exact)" : "",
      );
    return h(
      "tr",
      {
        testid: "runs-request-row",
        "data-id": q.id,
        "data-state": q.state,
        "data-run": run ?? "",
        class: `clickable ${cur.request === q.id ? "active" : ""}`,
        title: run ? "open this request: its answering run vs its reference" : "open this request (no run answers it yet)",
        onclick: () => openRequest(q),
      },
      h("td", { class: "mono", title: q.id }, q.id),
      h("td", null, q.line),
      h("td", { "data-col": "state" }, q.state),
      h("td", { class: "hint" }, q.received_at ?? "–"),
      h("td", { class: "num" }, q.version === null || q.version === undefined ? "–" : String(q.version)),
      h("td", { class: "num" }, String(q.n_examples)),
      h("td", null, requestRunIds(q).map(link)),
      h(
        "td",
        null,
        h(
          "button",
          {
            type: "button",
            class: "small",
            testid: "request-open",
            onclick: (e: Event) => {
              e.stopPropagation();
              openRequest(q);
            },
          },
          run ? "open (vs reference)" : "open",
        ),
      ),
    );
  }

  const SHOWN_REQUESTS = 100;

  function renderRequests(truncated: boolean) {
    clear(requestsBox);
    const states = [...new Set(requests.map((q) => q.state))].sort();
    const shown = filterRequests(requests, requestState || undefined);
    const visible = showAllRequests ? shown : shown.slice(0, SHOWN_REQUESTS);
    requestsBox.append(
      h("h2", null, "Deletion requests"),
      h(
        "div",
        { class: "filters" },
        h(
          "label",
          null,
          "state ",
          h(
            "select",
            {
              testid: "filter-request-state",
              onchange: (e: Event) => {
                requestState = (e.target as HTMLSelectElement).value;
                renderRequests(truncated);
              },
            },
            h("option", { value: "" }, "all"),
            states.map((st) => h("option", { value: st, selected: st === requestState }, st)),
          ),
        ),
        h("span", { class: "hint" }, "click a request to compare the run that answered it with its retrained reference and open its timeline, gate and certificate"),
      ),
      h(
        "div",
        { class: "table-box" },
        h(
          "table",
          { class: "runs requests", testid: "runs-requests-table" },
          h("thead", null, h("tr", null, ["request", "line", "state", "received", "version", "examples", "runs", ""].map((c) => h("th", null, c)))),
          h("tbody", null, visible.map(requestRow)),
        ),
      ),
      h(
        "div",
        { class: "hint", testid: "runs-requests-count" },
        `${visible.length} of ${requests.length} requests${truncated ? " (the newest; older ones are not listed)" : ""} `,
        visible.length < shown.length
          ? h(
              "button",
              {
                type: "button",
                class: "small",
                testid: "requests-show-all",
                onclick: () => {
                  showAllRequests = true;
                  renderRequests(truncated);
                },
              },
              `show all ${shown.length}`,
            )
          : null,
      ),
    );
  }

  async function loadRequests() {
    let ws: Workspace | null = ctx.workspace;
    try {
      ws = ws ?? (await cached<Workspace>("/workspace"));
    } catch {
      return; // the header shows the workspace's own error
    }
    if (!ws.service) return;
    requestsBox.append(loading("deletion requests"));
    try {
      const r = await cached<RequestsResponse>("/requests");
      requests = r.requests ?? [];
      byRun = requestsByRun(requests);
      if (!requests.length) {
        clear(requestsBox);
        requestsBox.append(h("h2", null, "Deletion requests"), notice("The service has answered no deletion requests in this workspace yet.", "runs-requests-empty"));
        return;
      }
      renderRequests(Boolean(r.truncated));
      renderTable();
    } catch (e) {
      clear(requestsBox);
      requestsBox.append(errorBox(e, "deletion requests"));
    }
  }

  renderPick();
  renderTable();
  void loadRequests();
  return { update() {}, destroy() {} };
}

export async function loadRuns(): Promise<RunsResponse> {
  return cached<RunsResponse>("/runs");
}
