// The JSON API of docs/comparator.md (same-origin /api/v1) and its shapes.

export interface Workspace {
  home: string;
  runs: number;
  modalities: string[];
  service: boolean;
  read_only: boolean;
}

export interface Run {
  id: string;
  kind: string;
  method: string;
  params: Record<string, unknown>;
  seed: number | null;
  modality: string;
  task_key: string;
  task_label: string;
  scenario_label: string;
  created_at: string;
  parent: string | null;
  artifact_present: boolean;
  status?: string;
  error?: string | null;
  metrics: Record<string, number | null>;
}

export type Goal = "max" | "min" | "zero" | "reference" | null;

export interface Column {
  key: string;
  label: string;
  goal: Goal;
  help?: string;
  unit?: string | null;
  /** one of the catalogue's headline metrics (shown by default) */
  headline?: boolean;
}

export interface RunsResponse {
  runs: Run[];
  columns: Column[];
}

export interface Model {
  id: string;
  label: string;
  kind: string;
  method: string;
  artifact: string | null;
}

export interface Pair {
  a: Model;
  b: Model;
  task: { key: string; label: string; modality: string; classes?: string[]; graph?: GraphInfo };
  views: string[];
  /** per view not offered for this pair: why (a sentence the page shows), e.g. classifier on link prediction */
  unavailable?: Record<string, string>;
}

/** A graph task's shape (pair.task.graph). */
export interface GraphInfo {
  task_kind: "node" | "link";
  nodes: number;
  edges: number;
  has_features: boolean;
  retain_edges: number;
  forget_kinds: Record<string, number>;
}

export type SplitMap<T> = Record<string, T>;

export interface Classes {
  classes: string[];
  forget_classes: number[];
  splits: string[];
  accuracy: { a: SplitMap<(number | null)[]>; b: SplitMap<(number | null)[]> };
  matrix: { a: SplitMap<number[][]>; b: SplitMap<number[][]> };
}

export interface Embeddings {
  projection: string;
  sample: {
    ids: string[];
    split: string[];
    label: number[];
    /** optional: each model's prediction per sampled instance (lets a matrix cell select instances) */
    pred?: { a: number[]; b: number[] };
  };
  a: [number, number][];
  b: [number, number][];
  /** each model's prediction per sampled instance (the backend sends it here) */
  pred?: { a: number[]; b: number[] };
  procrustes_disparity: number;
  layer: string;
}

export interface Cka {
  layers: string[];
  a_vs_original: (number | null)[];
  a_vs_reference: (number | null)[];
  b_vs_original: (number | null)[];
  b_vs_reference: (number | null)[];
  a_vs_b?: (number | null)[];
  n?: number;
  reference?: Model | null;
  reference_missing?: string | null;
}

export type InstanceInput =
  | { kind: "image"; height: number; width: number; channels?: number; pixels: number[] }
  | { kind: "row"; features: [string, number | null][]; note?: string }
  | { kind: "edge"; u: string; v: string }
  | { kind: "text"; text: string };

export interface InstanceModel {
  probs: (number | null)[];
  pred: number;
  loss: number | null;
  /** link prediction: sigma(s(u, v)) */
  edge_prob?: number | null;
}

/** What the instance panel shows of a graph element. */
export type GraphElement =
  | { kind: "node" | "features"; node: string; degree: number; degree_retain: number }
  | { kind: "edge"; u: string; v: string; degree_u: number; degree_v: number; in_retain_graph: boolean };

export interface InstanceRow {
  id: string;
  split: string;
  label: number;
  input: InstanceInput;
  a: InstanceModel;
  b: InstanceModel;
  /** graph tasks: the node or edge */
  graph?: GraphElement;
  /** why a row has no prediction (an element the task does not supervise) */
  note?: string;
}

export type FeatureValues = Record<string, (number | null)[]>;

export interface AttackSide {
  ids: string[];
  a: FeatureValues;
  b: FeatureValues;
}

export interface Ulira {
  ids: string[];
  /** per forget example: U-LiRA's balanced accuracy (0.5 = chance: forgotten as by retraining) */
  success: (number | null)[];
  /** per forget example: U-LiRA's AUC over its shadow targets */
  auc?: (number | null)[] | null;
  n_shadow?: number | null;
  /** the evaluation whose privacy report this is */
  evaluation?: string;
}

/** A deletion request as GET /requests lists it. */
export interface RequestRow {
  id: string;
  line: string;
  state: string;
  received_at: string | null;
  updated_at?: string | null;
  batch: string | null;
  version: number | null;
  n_examples: number;
  n_subjects: number;
  reason?: string | null;
  certificate?: string | null;
  /** the batch's runs: the policy's method, the exact path after a failed gate */
  unlearn_run?: string | null;
  escalate_run?: string | null;
  /** the run that answers it (the escalation's when there is one) */
  run?: string | null;
  runs?: string[];
}

export interface RequestsResponse {
  requests: RequestRow[];
  truncated: boolean;
}

export interface Attack {
  features: string[];
  forget: AttackSide;
  holdout: AttackSide;
  ulira?: {
    a: Ulira | null;
    b: Ulira | null;
    /** why a side has no per-example success */
    reason?: { a?: string | null; b?: string | null };
    /** U-LiRA aggregates of a stored privacy report */
    summary?: { a?: Record<string, number> | null; b?: Record<string, number> | null };
  } | null;
  /** optional clip ranges per feature (else attack.ts's defaults) */
  ranges?: Record<string, [number, number]>;
  bins?: number;
  /** graph tasks: what the rows are ("nodes" | "edges") and what each feature means there */
  rows?: string;
  about?: Record<string, string>;
}

/** An RFC 9457 problem, a network failure (status 0) or a malformed answer. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public title: string,
    public detail: string,
    public type: string = "about:blank",
  ) {
    super(detail);
  }
}

export const API = "/api/v1";

function query(params?: Record<string, string | number | null | undefined>): string {
  if (!params) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function getJSON<T>(path: string, params?: Record<string, string | number | null | undefined>): Promise<T> {
  const url = `${API}${path}${query(params)}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { Accept: "application/json, application/problem+json" } });
  } catch (e) {
    throw new ApiError(
      0,
      "Network error",
      `Could not reach the unlearnkit server (${url}): ${e instanceof Error ? e.message : String(e)}. Is \`unlearnkit ui\` still running?`,
    );
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const p = (body ?? {}) as { title?: string; detail?: string; type?: string };
    const detail = typeof p.detail === "string" && p.detail ? p.detail : `The server answered ${res.status} ${res.statusText} for ${url}.`;
    throw new ApiError(res.status, p.title || res.statusText || "Error", detail, p.type || "about:blank");
  }
  if (body === null) throw new ApiError(res.status, "Bad answer", `The server's answer to ${url} is not JSON.`);
  return body as T;
}

const memo = new Map<string, Promise<unknown>>();

/** getJSON, memoised per URL for the page's life (failures are forgotten so a retry refetches). */
export function cached<T>(path: string, params?: Record<string, string | number | null | undefined>): Promise<T> {
  const key = `${path}${query(params)}`;
  let p = memo.get(key) as Promise<T> | undefined;
  if (!p) {
    p = getJSON<T>(path, params);
    memo.set(key, p);
    p.catch(() => memo.delete(key));
  }
  return p;
}

export function clearCache(): void {
  memo.clear();
}
