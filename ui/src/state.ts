// The one state store of the page, mirrored in the URL hash so that a link reproduces a view.
// Pure: no DOM here except bindHash, which takes the window it binds to.

import { STRATEGIES, type Strategy } from "./attack";

export type View = "runs" | "classifier" | "attack" | "lm" | "requests";
export const VIEWS: readonly View[] = ["runs", "classifier", "attack", "lm", "requests"];
export type Projection = "pca" | "umap";
export const PROJECTIONS: readonly Projection[] = ["pca", "umap"];

export interface State {
  /** model A: a run id (or unique prefix), reference:<run> or original:<run> */
  a: string | null;
  /** model B */
  b: string | null;
  view: View;
  /** selected example ids (shared by every view) */
  selection: Set<string>;
  /** the attack threshold of the custom strategy; null = the middle of the feature's range */
  threshold: number | null;
  /** the attack feature (entropy, confidence, loss) */
  feature: string;
  strategy: Strategy;
  projection: Projection;
  /** the deletion request open in the requests view */
  request: string | null;
  /** the LM question open in the question browser: "<split>:<index>" */
  question: string | null;
}

export function defaultState(): State {
  return {
    a: null,
    b: null,
    view: "runs",
    selection: new Set(),
    threshold: null,
    feature: "entropy",
    strategy: "custom",
    projection: "pca",
    request: null,
    question: null,
  };
}

export type Patch = Partial<Omit<State, "selection">> & { selection?: Iterable<string> };
export type Listener = (state: State, prev: State) => void;

export interface Store {
  get(): State;
  /** Apply a patch; listeners run only when something changed. */
  set(patch: Patch): void;
  subscribe(fn: Listener): () => void;
}

function sameSet(x: Set<string>, y: Set<string>): boolean {
  if (x.size !== y.size) return false;
  for (const v of x) if (!y.has(v)) return false;
  return true;
}

export function sameState(x: State, y: State): boolean {
  return (
    x.a === y.a &&
    x.b === y.b &&
    x.view === y.view &&
    x.threshold === y.threshold &&
    x.feature === y.feature &&
    x.strategy === y.strategy &&
    x.projection === y.projection &&
    x.request === y.request &&
    x.question === y.question &&
    sameSet(x.selection, y.selection)
  );
}

export function applyPatch(s: State, patch: Patch): State {
  const next: State = { ...s, selection: s.selection };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) continue;
    if (k === "selection") next.selection = new Set(v as Iterable<string>);
    else (next as unknown as Record<string, unknown>)[k] = v;
  }
  return next;
}

export function createStore(initial: Patch = {}): Store {
  let state = applyPatch(defaultState(), initial);
  const listeners = new Set<Listener>();
  return {
    get: () => state,
    set(patch: Patch) {
      const next = applyPatch(state, patch);
      if (sameState(next, state)) return;
      const prev = state;
      state = next;
      for (const fn of [...listeners]) fn(state, prev);
    },
    subscribe(fn: Listener) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

// ---- URL hash -------------------------------------------------------------------------

/**
 * `#view=attack&a=<id>&b=reference%3A<id>&sel=<id>,<id>&t=1.25&feature=entropy&strategy=custom&projection=pca`
 * Only values that differ from the defaults are written; ids in `sel` are percent-encoded
 * one by one, so an id may hold commas.
 */
export function encodeHash(s: State): string {
  const d = defaultState();
  const parts: string[] = [];
  const put = (k: string, v: string) => parts.push(`${k}=${encodeURIComponent(v)}`);
  if (s.view !== d.view) put("view", s.view);
  if (s.a !== null) put("a", s.a);
  if (s.b !== null) put("b", s.b);
  if (s.feature !== d.feature) put("feature", s.feature);
  if (s.strategy !== d.strategy) put("strategy", s.strategy);
  if (s.threshold !== null) put("t", String(s.threshold));
  if (s.projection !== d.projection) put("projection", s.projection);
  if (s.request !== null) put("request", s.request);
  if (s.question !== null) put("question", s.question);
  if (s.selection.size > 0) {
    const ids = [...s.selection].sort().map((id) => encodeURIComponent(id).replace(/,/g, "%2C"));
    parts.push(`sel=${ids.join(",")}`);
  }
  return parts.length ? `#${parts.join("&")}` : "";
}

/** The state a hash describes (defaults for anything missing or malformed). */
export function decodeHash(hash: string): State {
  const s = defaultState();
  const body = hash.startsWith("#") ? hash.slice(1) : hash;
  if (!body) return s;
  for (const part of body.split("&")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    const k = part.slice(0, i);
    const raw = part.slice(i + 1);
    let v: string;
    try {
      v = k === "sel" ? raw : decodeURIComponent(raw);
    } catch {
      continue;
    }
    switch (k) {
      case "view":
        if ((VIEWS as readonly string[]).includes(v)) s.view = v as View;
        break;
      case "a":
        s.a = v || null;
        break;
      case "b":
        s.b = v || null;
        break;
      case "feature":
        if (v) s.feature = v;
        break;
      case "strategy":
        if ((STRATEGIES as readonly string[]).includes(v)) s.strategy = v as Strategy;
        break;
      case "t": {
        const x = Number(v);
        if (v !== "" && Number.isFinite(x)) s.threshold = x;
        break;
      }
      case "projection":
        if ((PROJECTIONS as readonly string[]).includes(v)) s.projection = v as Projection;
        break;
      case "request":
        s.request = v || null;
        break;
      case "question":
        s.question = v || null;
        break;
      case "sel": {
        const ids: string[] = [];
        for (const e of v.split(",")) {
          if (!e) continue;
          try {
            ids.push(decodeURIComponent(e));
          } catch {
            /* skip a malformed id */
          }
        }
        s.selection = new Set(ids);
        break;
      }
    }
  }
  return s;
}

/** Everything but the selection as a Patch (for applying a decoded hash). */
export function asPatch(s: State): Patch {
  return { ...s, selection: s.selection };
}

interface HashWindow {
  location: { hash: string; pathname: string; search: string };
  history: { replaceState(data: unknown, unused: string, url?: string): void };
  addEventListener(type: "hashchange", fn: () => void): void;
  removeEventListener(type: "hashchange", fn: () => void): void;
}

/**
 * Keep the store and the window's hash in step: the hash is read once now, a hashchange
 * (back button, a pasted link) patches the store, a store change rewrites the hash
 * (replaceState, so a brush does not flood the history). Returns an unbind function.
 */
export function bindHash(store: Store, win: HashWindow): () => void {
  store.set(asPatch(decodeHash(win.location.hash)));
  const onHash = () => {
    const s = decodeHash(win.location.hash);
    if (!sameState(s, store.get())) store.set(asPatch(s));
  };
  win.addEventListener("hashchange", onHash);
  const unsub = store.subscribe((s) => {
    const h = encodeHash(s);
    const now = win.location.hash === "#" ? "" : win.location.hash;
    if (h !== now) win.history.replaceState(null, "", h === "" ? win.location.pathname + win.location.search : h);
  });
  return () => {
    win.removeEventListener("hashchange", onHash);
    unsub();
  };
}
