import { describe, expect, it, vi } from "vitest";
import { bindHash, createStore, decodeHash, defaultState, encodeHash, type State } from "../src/state";

function full(): State {
  return {
    a: "3f2a9c",
    b: "reference:3f2a9c",
    view: "attack",
    selection: new Set(["ex-1", "ex,2", "e x/3&4=5", "é"]),
    threshold: 1.25,
    feature: "confidence",
    strategy: "common",
    projection: "umap",
    request: "req-7",
    question: "forget:3",
  };
}

describe("URL hash round trip", () => {
  it("decode(encode(s)) == s", () => {
    const s = full();
    const back = decodeHash(encodeHash(s));
    expect({ ...back, selection: [...back.selection].sort() }).toEqual({ ...s, selection: [...s.selection].sort() });
  });
  it("the default state is the empty hash", () => {
    expect(encodeHash(defaultState())).toBe("");
    expect(decodeHash("")).toEqual(defaultState());
    expect(decodeHash("#")).toEqual(defaultState());
  });
  it("a link is readable and stable (sorted selection)", () => {
    const s = defaultState();
    s.view = "classifier";
    s.a = "abc";
    s.b = "reference:abc";
    s.selection = new Set(["b", "a"]);
    expect(encodeHash(s)).toBe("#view=classifier&a=abc&b=reference%3Aabc&sel=a,b");
  });
  it("ignores malformed and unknown values", () => {
    const s = decodeHash("#view=nope&strategy=bad&t=abc&projection=tsne&zzz=1&sel=%E0%A4%A,ok&junk");
    expect(s.view).toBe("runs");
    expect(s.strategy).toBe("custom");
    expect(s.threshold).toBeNull();
    expect(s.projection).toBe("pca");
    expect([...s.selection]).toEqual(["ok"]);
  });
  it("keeps a threshold of 0 and negative thresholds", () => {
    for (const t of [0, -2.5, 9.9375]) {
      const s = defaultState();
      s.threshold = t;
      expect(decodeHash(encodeHash(s)).threshold).toBe(t);
    }
  });
});

describe("store", () => {
  it("notifies subscribers with the new and previous state, only on change", () => {
    const store = createStore();
    const fn = vi.fn();
    store.subscribe(fn);
    store.set({ view: "classifier" });
    expect(fn).toHaveBeenCalledTimes(1);
    expect(fn.mock.calls[0][0].view).toBe("classifier");
    expect(fn.mock.calls[0][1].view).toBe("runs");
    store.set({ view: "classifier" });
    store.set({ selection: [] });
    expect(fn).toHaveBeenCalledTimes(1);
    store.set({ selection: ["x", "y"] });
    expect(fn).toHaveBeenCalledTimes(2);
    store.set({ selection: new Set(["y", "x"]) });
    expect(fn).toHaveBeenCalledTimes(2);
  });
  it("copies the selection (no aliasing with the caller's set)", () => {
    const store = createStore();
    const sel = new Set(["a"]);
    store.set({ selection: sel });
    sel.add("b");
    expect([...store.get().selection]).toEqual(["a"]);
  });
  it("unsubscribes", () => {
    const store = createStore();
    const fn = vi.fn();
    const off = store.subscribe(fn);
    off();
    store.set({ a: "x" });
    expect(fn).not.toHaveBeenCalled();
  });
});

describe("bindHash", () => {
  function fakeWindow(hash: string) {
    const handlers = new Set<() => void>();
    const win = {
      location: { hash, pathname: "/", search: "" },
      history: {
        replaceState: vi.fn((_d: unknown, _u: string, url?: string) => {
          win.location.hash = url && url.startsWith("#") ? url : "";
        }),
      },
      addEventListener: (_t: "hashchange", fn: () => void) => handlers.add(fn),
      removeEventListener: (_t: "hashchange", fn: () => void) => handlers.delete(fn),
      navigate(h: string) {
        win.location.hash = h;
        for (const fn of handlers) fn();
      },
    };
    return win;
  }
  it("a link reproduces the view; store changes rewrite the hash; hashchange patches the store", () => {
    const s = full();
    const win = fakeWindow(encodeHash(s));
    const store = createStore();
    const off = bindHash(store, win);
    expect(encodeHash(store.get())).toBe(encodeHash(s));
    store.set({ threshold: 2, selection: ["z"] });
    expect(decodeHash(win.location.hash).threshold).toBe(2);
    expect([...decodeHash(win.location.hash).selection]).toEqual(["z"]);
    win.navigate("#view=lm");
    expect(store.get().view).toBe("lm");
    expect(store.get().a).toBeNull();
    store.set({ view: "runs" });
    expect(win.location.hash).toBe("");
    off();
    win.navigate("#view=requests");
    expect(store.get().view).toBe("runs");
  });
});

describe("the projection in the URL", () => {
  it("a UMAP view is a link of its own; PCA, the default, writes nothing", () => {
    const s = defaultState();
    s.view = "classifier";
    s.projection = "umap";
    expect(encodeHash(s)).toBe("#view=classifier&projection=umap");
    expect(decodeHash("#view=classifier&projection=umap").projection).toBe("umap");
    s.projection = "pca";
    expect(encodeHash(s)).toBe("#view=classifier");
  });
});
