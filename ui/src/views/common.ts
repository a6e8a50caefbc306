import type { Pair, Workspace } from "../api";
import type { PointCloud } from "../pointcloud";
import type { State, Store } from "../state";

export interface Ctx {
  store: Store;
  workspace: Workspace | null;
  /** the compared pair (null when none is picked or it failed to load) */
  pair: Pair | null;
  /** register a point cloud for window.__unlearnkit.pointsOnScreen(name) */
  cloud(name: string, c: PointCloud | null): void;
}

export interface ViewHandle {
  update(s: State, prev: State): void;
  destroy(): void;
}

export const NOOP: ViewHandle = { update() {}, destroy() {} };

/** Replace or extend the selection. */
export function selectIds(store: Store, ids: Iterable<string>, mode: "replace" | "add" = "replace"): void {
  const next = mode === "add" ? new Set(store.get().selection) : new Set<string>();
  for (const id of ids) next.add(id);
  store.set({ selection: next });
}
