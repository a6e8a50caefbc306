// The comparator page: a header (workspace, the compared pair, the view tabs), one view at a
// time, and the state store mirrored in the URL hash. window.__unlearnkit is the handle the
// end-to-end tests use.

import { cached, type Pair, type Workspace } from "./api";
import { append, clear, computing, errorBox, h, loading, notice, shortId } from "./dom";
import { exporters } from "./export";
import type { PointCloud, ScreenPoint } from "./pointcloud";
import { bindHash, createStore, encodeHash, type State, type View } from "./state";
import { mountAttack } from "./views/attackView";
import { mountClassifier } from "./views/classifier";
import type { Ctx, ViewHandle } from "./views/common";
import { mountLm } from "./views/lm";
import { mountRequests } from "./views/requests";
import { loadRuns, mountRuns } from "./views/runs";
import * as attackMaths from "./attack";

const TABS: { view: View; label: string }[] = [
  { view: "runs", label: "Runs" },
  { view: "classifier", label: "Classifier" },
  { view: "attack", label: "Attack" },
  { view: "lm", label: "Language models" },
  { view: "requests", label: "Deletion requests" },
];

function start(root: HTMLElement): void {
  const store = createStore();
  const clouds = new Map<string, PointCloud>();
  const ctx: Ctx = {
    store,
    workspace: null,
    pair: null,
    cloud: (name, c) => {
      if (c) clouds.set(name, c);
      else clouds.delete(name);
    },
  };
  let pairError: unknown = null;
  let pairKey = "";
  let pairPromise: Promise<Pair | null> = Promise.resolve(null);
  let current: ViewHandle | null = null;
  let mounted = "";
  let generation = 0;

  const wsLine = h("span", { class: "ws", testid: "workspace" });
  const pairBar = h("div", { class: "pair-bar", testid: "pair-bar" });
  const tabs = h("nav", { class: "tabs", testid: "tabs" });
  const viewEl = h("main", { class: "view", testid: "view" });
  root.append(h("header", null, h("div", { class: "title-row" }, h("h1", null, "unlearnkit comparator"), wsLine), pairBar, tabs), viewEl);

  function renderTabs(s: State) {
    clear(tabs);
    for (const t of TABS) {
      tabs.append(
        h(
          "button",
          { type: "button", class: s.view === t.view ? "active" : "", testid: `tab-${t.view}`, "aria-selected": String(s.view === t.view), onclick: () => store.set({ view: t.view }) },
          t.label,
        ),
      );
    }
  }

  function renderPairBar(s: State) {
    clear(pairBar);
    if (!s.a || !s.b) {
      pairBar.append(h("span", { class: "hint" }, "No models picked: choose two runs in the Runs view (a run and its reference by default)."));
      return;
    }
    const p = ctx.pair;
    append(pairBar, [
      h("span", { class: "model a", testid: "model-a" }, h("span", { class: "swatch" }), "A ", h("b", null, p ? p.a.label : shortId(s.a)), p ? h("code", null, ` ${shortId(p.a.id)}`) : null),
      h("span", { class: "vs" }, "vs"),
      h("span", { class: "model b", testid: "model-b" }, h("span", { class: "swatch" }), "B ", h("b", null, p ? p.b.label : shortId(s.b)), p ? h("code", null, ` ${shortId(p.b.id)}`) : null),
      p ? h("span", { class: "task", testid: "pair-task" }, `task: ${p.task.label} (${p.task.modality})`) : null,
      h("button", { type: "button", class: "small", testid: "swap-pair", onclick: () => store.set({ a: s.b, b: s.a }) }, "swap"),
    ]);
    if (pairError) {
      const detail = pairError instanceof Error ? pairError.message : String(pairError);
      pairBar.append(h("span", { class: "pair-error", testid: "pair-error", role: "alert" }, `⚠ cannot compare: ${detail}`));
    }
  }

  function loadPair(s: State): Promise<Pair | null> {
    const key = `${s.a}|${s.b}`;
    if (key === pairKey) return pairPromise;
    pairKey = key;
    ctx.pair = null;
    pairError = null;
    if (!s.a || !s.b) {
      pairPromise = Promise.resolve(null);
      return pairPromise;
    }
    pairPromise = cached<Pair>("/pair", { a: s.a, b: s.b }).then(
      (p) => {
        if (pairKey === key) ctx.pair = p;
        return p;
      },
      (e) => {
        if (pairKey === key) pairError = e;
        return null;
      },
    );
    return pairPromise;
  }

  /** What loading a pair may be doing: training the retrained reference where one is asked for. */
  function pairWork(s: State): string {
    const wantsReference = [s.a, s.b].some((m) => m?.startsWith("reference:"));
    if (wantsReference && !ctx.workspace?.read_only)
      return "training the reference (the retrained model of this run's task, when the workspace has not cached it yet: seconds on a small classifier, minutes on a language model); it is cached for every later view";
    return "loading the two models and checking their artifacts";
  }

  async function mount(s: State) {
    const gen = ++generation;
    current?.destroy();
    current = null;
    clear(viewEl);
    viewEl.append(s.view === "runs" || s.view === "requests" || !s.a || !s.b ? loading(s.view) : computing(s.view, pairWork(s)));
    const el = h("div", { class: "view-body", testid: `view-${s.view}-root` });
    const done = (handle: ViewHandle) => {
      if (gen !== generation) {
        handle.destroy();
        return;
      }
      current = handle;
    };
    try {
      if (s.view === "runs") {
        const runs = await loadRuns();
        if (gen !== generation) return;
        clear(viewEl);
        viewEl.append(el);
        done(mountRuns(el, ctx, runs));
        return;
      }
      if (s.view === "requests") {
        clear(viewEl);
        viewEl.append(el);
        done(mountRequests(el, ctx));
        return;
      }
      const pair = await loadPair(s);
      if (gen !== generation) return;
      renderPairBar(store.get());
      clear(viewEl);
      viewEl.append(el);
      if (s.view === "lm") {
        done(mountLm(el, ctx, pairError ? null : pair));
        if (pairError) el.prepend(errorBox(pairError, "comparing these models"));
        return;
      }
      if (!s.a || !s.b) {
        el.append(notice("Pick two models to compare: in the Runs view, click “vs reference” on a run, or choose A and B and click Compare.", "no-pair"));
        return;
      }
      if (pairError || !pair) {
        el.append(errorBox(pairError ?? new Error("the pair could not be loaded"), "comparing these models"));
        return;
      }
      if (!pair.views.includes(s.view)) {
        const why = pair.unavailable?.[s.view];
        el.append(
          notice(
            why
              ? `${why} (available: ${pair.views.join(", ") || "none"})`
              : `The ${s.view} view is not available for this pair: its task is a ${pair.task.modality} task (available: ${pair.views.join(", ") || "none"}).`,
            "view-unavailable",
          ),
        );
        return;
      }
      done(s.view === "classifier" ? mountClassifier(el, ctx, pair) : mountAttack(el, ctx, pair));
    } catch (e) {
      if (gen !== generation) return;
      clear(viewEl);
      viewEl.append(errorBox(e, s.view));
    }
  }

  store.subscribe((s, prev) => {
    renderTabs(s);
    const key = mountKey(s);
    if (s.a !== prev.a || s.b !== prev.b) {
      void loadPair(s).then(() => renderPairBar(store.get()));
      renderPairBar(s);
    }
    if (key !== mounted) {
      mounted = key;
      void mount(s);
    } else current?.update(s, prev);
  });

  // the handle the end-to-end tests use
  const handle = {
    store,
    get state(): State {
      return store.get();
    },
    hash: () => encodeHash(store.get()),
    /** the points of a point cloud ("embedding-a", "embedding-b", "attack-a", "attack-b") in viewport coordinates */
    pointsOnScreen: (name: string): ScreenPoint[] => clouds.get(name)?.pointsOnScreen() ?? [],
    /** the ids a point cloud draws as selected */
    highlighted: (name: string): string[] => clouds.get(name)?.selectedIds() ?? [],
    clouds: () => [...clouds.keys()],
    select: (ids: string[]) => store.set({ selection: ids }),
    exportSvg: (name: string): string | null => exporters().get(name)?.svg() ?? null,
    plots: () => [...exporters().keys()],
    /** a plot's PNG as a data: URL (what the PNG button downloads) */
    pngDataUrl: async (name: string): Promise<string | null> => {
      const e = exporters().get(name);
      return e ? (await e.canvas()).toDataURL("image/png") : null;
    },
    attack: attackMaths,
  };
  (window as unknown as { __unlearnkit: typeof handle }).__unlearnkit = handle;

  void cached<Workspace>("/workspace").then(
    (ws) => {
      ctx.workspace = ws;
      wsLine.textContent = `${ws.home} · ${ws.runs} runs${ws.modalities.length ? ` · ${ws.modalities.join(", ")}` : ""}${ws.service ? " · service" : ""}${ws.read_only ? " · read-only" : ""}`;
    },
    (e) => {
      wsLine.textContent = "";
      wsLine.append(errorBox(e, "workspace"));
    },
  );

  bindHash(store, window);
  const s = store.get();
  renderTabs(s);
  renderPairBar(s);
  mounted = mountKey(s);
  if (s.a && s.b) void loadPair(s).then(() => renderPairBar(store.get()));
  void mount(s);
}

/** What a view is mounted for: the requests view does not depend on the pair (picking a
 * request sets it without redrawing the view). */
function mountKey(s: State): string {
  return s.view === "requests" ? s.view : `${s.view}|${s.a}|${s.b}`;
}

function boot(): void {
  const root = document.getElementById("app");
  if (!root) return;
  try {
    start(root);
  } catch (e) {
    root.append(errorBox(e, "starting the page"));
  }
}

window.addEventListener("error", (ev) => {
  const root = document.getElementById("app");
  if (root && !root.querySelector("header")) root.append(errorBox(ev.error ?? ev.message, "the page"));
});

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
