// Language models: forget quality vs model utility of every LM run, the probes of the pair
// against the reference, and a question browser (greedy answers, per-token log-prob
// differences against the reference).

import { cached, type Pair } from "../api";
import { COLOR_A, COLOR_B, COLOR_REF, scatterChart, tokenBars, type ScatterPoint } from "../charts";
import { clear, h, into, notice, shortId } from "../dom";
import { figure, svgExporter } from "../export";
import type { State } from "../state";
import type { Ctx, ViewHandle } from "./common";
import { cellText, isObj, kvTable, pick, rowsOf, table, type Json } from "./generic";

export function mountLm(el: HTMLElement, ctx: Ctx, pair: Pair | null): ViewHandle {
  const { store } = ctx;
  const overview = h("section", { class: "card", testid: "lm-overview" });
  const probes = h("section", { class: "card", testid: "lm-probes" });
  const questions = h("section", { class: "card", testid: "lm-questions" });
  el.append(h("div", { testid: "view-lm" }, overview, probes, questions));
  let split: "forget" | "retain" = (store.get().question?.split(":")[0] as "forget" | "retain") || "forget";

  void into(overview, "language-model runs", async () => {
    const o = await cached<Json>("/lm/overview");
    const rows = rowsOf(o, "runs", "points", "rows");
    if (!rows.length) return notice("No language-model runs in this workspace.", "lm-empty");
    const s = store.get();
    const pts: ScatterPoint[] = [];
    for (const r of rows) {
      const x = Number(pick(r, "model_utility", "utility", "metrics.model_utility"));
      const y = Number(pick(r, "forget_quality", "metrics.forget_quality"));
      if (pick(r, "model_utility") === undefined || pick(r, "forget_quality") === undefined || !Number.isFinite(x) || !Number.isFinite(y)) continue;
      const id = String(pick(r, "id", "run") ?? "");
      const isRef = pick(r, "is_reference") === true;
      pts.push({
        id,
        x,
        y,
        label: `${pick(r, "method") ?? id} ${shortId(id)} (seed ${cellText(pick(r, "seed") ?? null)})`,
        color: id === s.a ? COLOR_A : id === s.b ? COLOR_B : isRef ? COLOR_REF : "#8a8fb0",
        highlight: id === s.a || id === s.b,
      });
    }
    const ref = pick(o, "reference");
    if (isObj(ref) && typeof ref.model_utility === "number" && typeof ref.forget_quality === "number" && !pts.some((p) => p.id === ref.run))
      pts.push({ id: String(ref.run ?? "reference"), x: ref.model_utility, y: ref.forget_quality, label: "reference (retrain)", color: COLOR_REF });
    const refWhy = isObj(ref) && typeof ref.why === "string" ? ref.why : null;
    const scatter = pts.length
      ? (() => {
          const svg = scatterChart({
            points: pts,
            xLabel: "model utility",
            yLabel: "forget quality",
            yLog: true,
            testid: "svg-lm-overview",
            onClick: (p) => store.set({ a: p.id, b: `reference:${p.id}`, view: "lm" }),
          });
          return figure("lm-overview", "Every evaluated language-model run (click one to compare it with its reference)", svg, svgExporter(svg));
        })()
      : notice("No language-model run stores both forget quality and model utility yet (`unlearnkit unlearn ... --evaluate`).", "lm-no-points");
    const threshold = pick(o, "threshold");
    return h(
      "div",
      null,
      h("h3", null, "Forget quality vs model utility"),
      scatter,
      typeof threshold === "number" ? h("p", { class: "hint" }, `TOFU: forget quality above ${threshold} means indistinguishable from the reference (KS test p-value).`) : null,
      refWhy ? h("p", { class: "hint", testid: "lm-reference-why" }, refWhy) : null,
      table(rows, "lm-runs-table", {
        rowTestid: "lm-run-row",
        columns: ["id", "kind", "method", "seed", "scenario_label", "status", "forget_quality", "model_utility"],
        onRow: (r) => store.set({ a: String(pick(r, "id")), b: `reference:${String(pick(r, "id"))}` }),
        active: (r) => pick(r, "id") === s.a,
      }),
    );
  });

  if (!pair) {
    probes.append(notice("Pick a language-model run (above, or in the Runs view) to see its probes and questions.", "lm-no-pair"));
    return { update() {}, destroy() {} };
  }
  if (!pair.views.includes("lm")) {
    probes.append(notice(`The picked pair's task (${pair.task.modality}) is not a language-model task; its views are ${pair.views.join(", ")}.`, "lm-not-lm"));
    return { update() {}, destroy() {} };
  }
  const q = { a: store.get().a, b: store.get().b };

  void into(probes, "probes", async () => {
    const p = await cached<Json>("/lm/probes", q);
    const rows = rowsOf(p, "probes", "rows", "results");
    const body = rows.length
      ? table(rows, "probes-table", { rowTestid: "probe-row", columns: ["probe", "measure", "a", "b", "reference", "gap_a", "gap_b", "goal"] })
      : isObj(p)
        ? probeObject(p)
        : h("pre", null, JSON.stringify(p, null, 1));
    const whys = rows.flatMap((r) => {
      const w = r.why;
      if (!isObj(w)) return [];
      return Object.entries(w)
        .filter(([, v]) => typeof v === "string" && v)
        .map(([side, v]) => `${cellText(r.probe ?? r.name ?? null)} (${side}): ${v}`);
    });
    const missing = rowsOf(p, "missing");
    const refWhy = pick(p, "reference_why");
    return h(
      "div",
      null,
      h("h3", null, "Probes (paraphrase, alias, multi-hop, relearning) against the reference"),
      h("p", { class: "hint" }, "gap = the model's value minus the retrained reference's (the goal of every probe is the reference's value)."),
      body,
      refWhy ? h("p", { class: "hint", testid: "probes-reference-why" }, `no reference: ${cellText(refWhy)}`) : null,
      [...new Set(whys)].map((w) => h("p", { class: "hint" }, w)),
      missing.map((m) => h("p", { class: "hint", testid: "probe-missing" }, `${cellText(m.probe ?? null)}: ${cellText(m.why ?? null)}`)),
    );
  });

  const list = h("div", { class: "question-list", testid: "question-list" });
  const detail = h("div", { class: "question-detail", testid: "question-detail" });
  const splitTabs = h("div", { class: "tabs small-tabs" });
  questions.append(h("h3", null, "Questions"), splitTabs, h("div", { class: "questions" }, list, detail));

  function renderTabs() {
    clear(splitTabs);
    for (const sp of ["forget", "retain"] as const)
      splitTabs.append(
        h(
          "button",
          {
            type: "button",
            class: sp === split ? "active" : "",
            testid: `question-split-${sp}`,
            onclick: () => {
              split = sp;
              renderTabs();
              loadList();
            },
          },
          sp,
        ),
      );
  }

  function loadList() {
    void into(list, "questions", async () => {
      const r = await cached<Json>("/lm/questions", { ...q, split });
      const items = Array.isArray(r) ? r : ((pick(r, "questions", "items") as Json[] | undefined) ?? []);
      if (!items.length) return notice(`No ${split} questions.`);
      return h(
        "ol",
        { start: 0 },
        items.map((it, i) => {
          const index = isObj(it) ? Number(pick(it, "index") ?? i) : i;
          const text = isObj(it) ? cellText(pick(it, "question", "text", "prompt") ?? null) : cellText(it);
          const active = store.get().question === `${split}:${index}`;
          return h("li", { class: active ? "active" : "", testid: "question-item", "data-index": index, onclick: () => store.set({ question: `${split}:${index}` }) }, text);
        }),
      );
    });
  }

  function loadQuestion(s: State) {
    clear(detail);
    if (!s.question) {
      detail.append(h("p", { class: "hint" }, "Pick a question."));
      return;
    }
    const [sp, idx] = s.question.split(":");
    void into(detail, "the question", async () => {
      const r = await cached<Json>("/lm/question", { ...q, split: sp, index: idx });
      return questionDetail(r, pair!);
    });
  }

  renderTabs();
  loadList();
  loadQuestion(store.get());
  return {
    update(s: State, prev: State) {
      if (s.question !== prev.question) {
        loadList();
        loadQuestion(s);
      }
    },
    destroy() {},
  };
}

function probeObject(p: Record<string, Json>): HTMLElement {
  // {probe: {a, b, reference}} or {a: {...}, b: {...}, reference: {...}}
  const sides = ["a", "b", "reference"].filter((k) => isObj(p[k]));
  if (sides.length >= 2) {
    const keys = [...new Set(sides.flatMap((k) => Object.keys(p[k] as Record<string, Json>)))];
    const rows = keys.map((k) => ({ probe: k, ...Object.fromEntries(sides.map((s) => [s, (p[s] as Record<string, Json>)[k] ?? null])) }) as Record<string, Json>);
    return table(rows, "probes-table", { rowTestid: "probe-row" });
  }
  const rows = Object.entries(p)
    .filter(([, v]) => isObj(v))
    .map(([k, v]) => ({ probe: k, ...(v as Record<string, Json>) }));
  return rows.length ? table(rows, "probes-table", { rowTestid: "probe-row" }) : kvTable(p, "probes-table");
}

function questionDetail(r: Json, pair: Pair): HTMLElement {
  const out = h("div", null);
  out.append(
    h("p", { class: "question-text", testid: "question-text" }, h("b", null, "Q: "), cellText(pick(r, "question", "prompt") ?? null)),
    h("p", { testid: "question-truth" }, h("b", null, "answer: "), cellText(pick(r, "answer", "truth", "target") ?? null)),
  );
  const series: { label: string; color: string; values: (number | null)[] }[] = [];
  let tokens: string[] = ((pick(r, "answer_tokens", "tokens") as Json[] | undefined) ?? []).map(String);
  for (const [side, color] of [
    ["a", COLOR_A],
    ["b", COLOR_B],
    ["reference", COLOR_REF],
  ] as const) {
    const m = pick(r, side);
    if (!isObj(m)) continue;
    const label = side === "reference" ? "reference" : `${side.toUpperCase()} ${pair[side].label}`;
    const extra = ["mean_logprob", "rouge", "exact"].filter((k) => m[k] !== undefined && m[k] !== null).map((k) => `${k.replace("_", " ")} ${cellText(m[k])}`);
    out.append(
      h(
        "p",
        { testid: `answer-${side}` },
        h("b", { style: `color:${color}` }, `${label}: `),
        cellText(pick(m, "greedy", "answer", "generation", "text") ?? null),
        extra.length ? h("span", { class: "hint" }, `  (${extra.join(" · ")})`) : null,
      ),
    );
    if (side === "reference") continue;
    const diff = pick(r, `diff_${side}`) ?? pick(m, "logprob_diff", "diff", "delta");
    if (Array.isArray(diff)) {
      series.push({ label: `${label} − reference`, color, values: diff.map((v) => (typeof v === "number" ? v : null)) });
      const t = pick(m, "tokens");
      if (Array.isArray(t) && !tokens.length) tokens = t.map(String);
    }
  }
  if (series.length) {
    if (!tokens.length) tokens = series[0].values.map((_, i) => String(i));
    const svg = tokenBars({ tokens, series, testid: "svg-token-bars" });
    out.append(figure("token-logprob", "Per-token log-probability of the true answer, minus the reference's", svg, svgExporter(svg)));
  } else {
    const why = pick(r, "reference_why");
    out.append(h("p", { class: "hint", testid: "token-bars-none" }, why ? `No per-token differences: ${cellText(why)}` : "No per-token differences against a reference in this answer."));
  }
  return out;
}
