import { describe, expect, it } from "vitest";
import type { RequestRow, Run } from "../src/api";
import { answeringRun, defaultPair, filterRequests, filterRuns, goalArrow, metricColumns, options, requestPair, requestRunIds, requestsByRun, sortRuns, viewFor } from "../src/runsTable";

function run(id: string, o: Partial<Run> = {}, metrics: Record<string, number | null> = {}): Run {
  return {
    id,
    kind: "unlearn",
    method: "ga",
    params: {},
    seed: 0,
    modality: "classifier",
    task_key: "t1",
    task_label: "digits · random 10%",
    scenario_label: "random 10%",
    created_at: "2026-01-01T00:00:00Z",
    parent: null,
    artifact_present: true,
    metrics,
    ...o,
  };
}

const runs = [
  run("r1", { method: "ga", seed: 1 }, { acc: 0.9, gap: null }),
  run("r2", { method: "scrub", seed: 0, task_key: "t2", task_label: "digits · class 3" }, { acc: 0.7, gap: 0.1 }),
  run("r3", { method: "retrain", seed: 10, kind: "reference", parent: "r1" }, { acc: 0.8, gap: 0.0 }),
];

describe("runs table", () => {
  it("filters by task, method and seed", () => {
    expect(filterRuns(runs, { task: "t2" }).map((r) => r.id)).toEqual(["r2"]);
    expect(filterRuns(runs, { method: "ga", seed: "1" }).map((r) => r.id)).toEqual(["r1"]);
    expect(filterRuns(runs, {}).length).toBe(3);
  });
  it("sorts numbers, strings and seeds; missing values last", () => {
    expect(sortRuns(runs, "acc", "desc").map((r) => r.id)).toEqual(["r1", "r3", "r2"]);
    expect(sortRuns(runs, "acc", "asc").map((r) => r.id)).toEqual(["r2", "r3", "r1"]);
    expect(sortRuns(runs, "gap", "desc").map((r) => r.id)).toEqual(["r2", "r3", "r1"]);
    expect(sortRuns(runs, "gap", "asc").map((r) => r.id)).toEqual(["r3", "r2", "r1"]);
    expect(sortRuns(runs, "method", "asc").map((r) => r.id)).toEqual(["r1", "r3", "r2"]);
    expect(sortRuns(runs, "seed", "asc").map((r) => r.id)).toEqual(["r2", "r1", "r3"]);
  });
  it("gives an arrow per goal", () => {
    expect(goalArrow("max").glyph).toBe("↑");
    expect(goalArrow("min").glyph).toBe("↓");
    expect(goalArrow("zero").glyph).toBe("→0");
    expect(goalArrow("reference").glyph).toBe("≈ref");
    expect(goalArrow(null).glyph).toBe("");
  });
  it("lists filter options and default pairs", () => {
    expect(options(runs, "task")).toEqual([
      ["t2", "digits · class 3"],
      ["t1", "digits · random 10%"],
    ]);
    expect(options(runs, "seed").map((o) => o[0])).toEqual(["0", "1", "10"]);
    expect(defaultPair(runs[0])).toEqual({ a: "r1", b: "reference:r1" });
    expect(defaultPair(runs[2])).toEqual({ a: "r1", b: "r3" });
    expect(viewFor("causal_lm")).toBe("lm");
    expect(viewFor("classifier")).toBe("classifier");
  });
});

describe("metric columns", () => {
  const cols = [
    { key: "acc_forget", label: "acc_forget", goal: "reference" as const, headline: true },
    { key: "js_test", label: "js_test", goal: "min" as const, headline: false },
  ];
  it("shows the headline metrics unless all are asked for", () => {
    expect(metricColumns(cols, false).map((c) => c.key)).toEqual(["acc_forget"]);
    expect(metricColumns(cols, true).map((c) => c.key)).toEqual(["acc_forget", "js_test"]);
    expect(metricColumns([{ ...cols[1] }], false).map((c) => c.key)).toEqual(["js_test"]);
  });
});

describe("deletion requests in the runs table", () => {
  const req = (id: string, o: Partial<RequestRow> = {}): RequestRow => ({
    id,
    line: "digits",
    state: "answered",
    received_at: "2026-01-01T00:00:00Z",
    batch: `b-${id}`,
    version: 1,
    n_examples: 5,
    n_subjects: 1,
    ...o,
  });
  const answered = req("req-1", { unlearn_run: "b1-unlearn", escalate_run: null, run: "b1-unlearn", runs: ["b1-unlearn"] });
  const escalated = req("req-2", { unlearn_run: "b2-unlearn", escalate_run: "b2-retrain", run: "b2-retrain", runs: ["b2-unlearn", "b2-retrain"] });
  const pending = req("req-3", { state: "received", batch: null, version: null });

  it("a request opens its answering run (the exact path's after an escalation) vs its reference", () => {
    expect(answeringRun(answered)).toBe("b1-unlearn");
    expect(requestPair(escalated)).toEqual({ a: "b2-retrain", b: "reference:b2-retrain" });
    expect(requestPair(pending)).toBeNull();
    // without the `run` field (an older server) the escalation still wins
    expect(answeringRun(req("x", { unlearn_run: "u", escalate_run: "e" }))).toBe("e");
  });

  it("lists every run of a request and maps runs back to their requests", () => {
    expect(requestRunIds(escalated)).toEqual(["b2-unlearn", "b2-retrain"]);
    expect(requestRunIds(req("x", { unlearn_run: "u" }))).toEqual(["u"]);
    expect(requestRunIds(pending)).toEqual([]);
    const two = req("req-4", { unlearn_run: "b2-unlearn", runs: ["b2-unlearn"] }); // one batch, two requests
    const m = requestsByRun([answered, escalated, pending, two]);
    expect(m.get("b2-unlearn")).toEqual(["req-2", "req-4"]);
    expect(m.get("b2-retrain")).toEqual(["req-2"]);
    expect(m.has("b1-unlearn")).toBe(true);
    expect(m.size).toBe(3);
  });

  it("filters requests by state and line, newest first", () => {
    const rows = [answered, escalated, pending];
    expect(filterRequests(rows).map((r) => r.id)).toEqual(["req-3", "req-2", "req-1"]);
    expect(filterRequests(rows, "answered").map((r) => r.id)).toEqual(["req-2", "req-1"]);
    expect(filterRequests(rows, undefined, "other")).toEqual([]);
    expect(rows.map((r) => r.id)).toEqual(["req-1", "req-2", "req-3"]); // the input is left as it was
  });
});
