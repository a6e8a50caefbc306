// Deletion requests answered by the service: the list, and per request its timeline, gate
// checks against thresholds and the certificate with its verification status.

import { cached, type RequestRow } from "../api";
import { clear, h, into, notice, shortId } from "../dom";
import { requestPair } from "../runsTable";
import type { State } from "../state";
import type { Ctx, ViewHandle } from "./common";
import { cellText, isObj, kvTable, pick, rowsOf, table, type Json } from "./generic";

export function mountRequests(el: HTMLElement, ctx: Ctx): ViewHandle {
  const { store } = ctx;
  const list = h("section", { class: "card", testid: "requests-list" });
  const detail = h("section", { class: "card", testid: "request-detail" });
  el.append(h("div", { testid: "view-requests" }, list, detail));

  void into(list, "deletion requests", async () => {
    const r = await cached<Json>("/requests");
    const rows = rowsOf(r, "requests", "items", "rows");
    if (!rows.length) return notice("The service has answered no deletion requests in this workspace yet.", "requests-empty");
    const cur = store.get().request;
    const scalar = new Set(rows.flatMap((row) => Object.keys(row).filter((k) => !isObj(row[k]) && !Array.isArray(row[k]))));
    const columns = ["id", "line", "state", "received_at", "updated_at", "batch", "version", "n_examples", "n_subjects", "reason", "certificate", "run"].filter((c) => scalar.has(c));
    return h(
      "div",
      null,
      h("h3", null, "Deletion requests"),
      h("p", { class: "hint" }, "Pick a request: its timeline, gate and certificate below, and the run that answered it compared with its reference (A and B)."),
      table(rows, "requests-table", {
        rowTestid: "request-row",
        columns: columns.length ? columns : undefined,
        onRow: (row) => store.set({ request: String(pick(row, "id", "request_id")), ...(requestPair(row as unknown as RequestRow) ?? {}) }),
        active: (row) => String(pick(row, "id", "request_id")) === cur,
      }),
    );
  });

  function load(s: State) {
    clear(detail);
    if (!s.request) {
      detail.append(h("p", { class: "hint" }, "Pick a request to see its timeline, gate checks and certificate."));
      return;
    }
    const id = s.request;
    void into(detail, `request ${id}`, async () => {
      const r = await cached<Json>(`/requests/${encodeURIComponent(id)}`);
      return requestDetail(id, r, store);
    });
  }

  load(store.get());
  return {
    update(s, prev) {
      if (s.request === prev.request) return;
      list.querySelectorAll<HTMLElement>('[data-testid="request-row"]').forEach((tr) => tr.classList.toggle("active", tr.dataset.id === s.request));
      load(s);
    },
    destroy() {},
  };
}

function requestDetail(id: string, r: Json, store: Ctx["store"]): HTMLElement {
  const out = h("div", null, h("h3", null, `Request ${id}`));
  const summary = isObj(r) ? (isObj(r.request) ? r.request : Object.fromEntries(Object.entries(r).filter(([, v]) => !isObj(v) && !Array.isArray(v)))) : {};
  if (Object.keys(summary).length) out.append(kvTable(summary as Record<string, Json>, "request-summary"));

  const batch = pick(r, "batch");
  if (isObj(batch)) {
    out.append(h("h4", null, "Batch"), kvTable(batch, "request-batch"));
    const runs = [batch.unlearn_run, batch.escalate_run].filter((x): x is string => typeof x === "string" && x !== "");
    const answer = typeof batch.run_id === "string" && batch.run_id ? batch.run_id : runs[runs.length - 1];
    if (runs.length)
      out.append(
        h(
          "p",
          { testid: "request-runs" },
          "runs: ",
          runs.map((id) =>
            h(
              "button",
              {
                type: "button",
                class: `small mono ${store.get().a === id ? "active" : ""}`,
                testid: "request-compare",
                "data-id": id,
                title: "compare this run with its retrained reference (A and B); the Classifier, Attack or Language models tab then shows them",
                onclick: () => store.set({ a: id, b: `reference:${id}` }),
              },
              `${shortId(id)}${id === batch.escalate_run ? " (exact path)" : ""}${id === answer ? " · answer" : ""} vs reference`,
            ),
          ),
        ),
      );
  }

  const timeline = rowsOf(r, "timeline", "events", "history");
  out.append(h("h4", null, "Timeline"));
  if (timeline.length) {
    out.append(
      h(
        "ol",
        { class: "timeline", testid: "request-timeline" },
        timeline.map((e) =>
          h(
            "li",
            { testid: "timeline-event", "data-state": cellText(pick(e, "state", "event", "status", "kind") ?? null) },
            h("b", null, cellText(pick(e, "state", "event", "status", "kind") ?? null)),
            " ",
            h("span", { class: "hint" }, cellText(pick(e, "at", "time", "created_at", "timestamp") ?? null)),
            pick(e, "detail", "note", "message") ? h("div", { class: "hint" }, cellText(pick(e, "detail", "note", "message"))) : null,
          ),
        ),
      ),
    );
  } else out.append(h("p", { class: "hint" }, "no timeline recorded"));

  const checks = rowsOf(r, "checks", "gate.checks", "gate");
  const gate = pick(r, "gate");
  out.append(h("h4", null, "Gate checks"));
  if (isObj(gate))
    out.append(
      h(
        "p",
        { testid: "gate-summary", "data-passed": String(gate.passed) },
        gate.passed === true ? "✓ the gate passed" : gate.passed === false ? "✗ the gate did not pass" : "gate not decided",
        gate.method ? ` · method ${cellText(gate.method)}` : "",
        gate.escalated ? " · escalated to the exact path" : "",
        gate.error ? ` · error: ${cellText(gate.error)}` : "",
      ),
    );
  if (checks.length) {
    out.append(
      h(
        "table",
        { class: "generic", testid: "gate-checks" },
        h("thead", null, h("tr", null, ["metric", "value", "threshold", "result"].map((c) => h("th", null, c)))),
        h(
          "tbody",
          null,
          checks.map((c) => {
            const passed = pick(c, "passed", "ok", "pass");
            const op = cellText(pick(c, "bound", "op", "operator", "comparison") ?? "");
            return h(
              "tr",
              { testid: "gate-check", class: passed === true ? "pass" : passed === false ? "fail" : "" },
              h("td", null, cellText(pick(c, "metric", "name", "key") ?? null)),
              h("td", { class: "num" }, cellText(pick(c, "value", "observed") ?? null)),
              h("td", { class: "num" }, `${op === "–" ? "" : op} ${cellText(pick(c, "threshold", "bound", "limit") ?? null)}`),
              h("td", { "data-passed": String(passed), title: cellText(pick(c, "why") ?? "") }, passed === true ? "✓ pass" : passed === false ? "✗ fail" : cellText(passed ?? null)),
            );
          }),
        ),
      ),
    );
  } else out.append(h("p", { class: "hint" }, "no gate checks recorded"));

  const cert = pick(r, "certificate");
  out.append(h("h4", null, "Certificate"));
  if (isObj(cert)) {
    const v = pick(cert, "verified", "verification.valid", "verification.ok", "valid");
    const reason = pick(cert, "why", "verification.reason", "reason", "verification.detail");
    out.append(
      h(
        "div",
        { class: `verify ${v === true ? "ok" : v === false ? "bad" : ""}`, testid: "certificate-status", "data-verified": String(v) },
        v === true ? "✓ signature verified" : v === false ? "✗ verification failed" : "verification status unknown",
        reason ? h("span", { class: "hint" }, ` (${cellText(reason)})`) : null,
      ),
      kvTable(Object.fromEntries(Object.entries(cert).filter(([k]) => k !== "verification" && k !== "document")) as Record<string, Json>, "certificate"),
      cert.document !== undefined ? h("details", null, h("summary", null, "signed document"), h("pre", { class: "doc", testid: "certificate-document" }, JSON.stringify(cert.document, null, 1))) : "",
    );
  } else out.append(h("p", { class: "hint", testid: "certificate-none" }, "no certificate (the request was not promoted)"));
  return out;
}
