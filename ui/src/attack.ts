// The attack simulation's threshold maths, as pure functions (no DOM).
//
// Mirrors `unlearnkit.evaluation.comparator` (src/unlearnkit/evaluation/comparator.py),
// which follows the Unlearning Comparator (Lee et al. 2025, arXiv:2508.12730):
//
//   for the rule "value >= t means positive": TPR = P(pos >= t), FPR = P(neg >= t),
//   FNR = 1 - TPR, and with delta = 1e-5
//   eps(t) = max(0, min(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)),
//   FQ(t)  = 2^-eps(t)   (FQ = 0 when FPR = FNR = 0, FQ = 1 when FPR or FNR >= 1 - delta),
//   attack score = 1 - FQ(t).
//
// FPR and FNR are clipped to [1e-10, 1 - delta - 1e-10] inside the logs, the values of a
// feature are clipped to its fixed range, and thresholds are `bins = 201` evenly spaced
// points of that range (numpy.linspace). Both directions are swept: "above" takes the
// forget set as the positives (members on the side >= t), "below" swaps the sets, as the
// Python swaps unlearned and reference (members on the side < t).
//
// In the page: members = the forget set, non-members = the holdout, for one model.

export const DELTA = 1e-5;
/** The clip inside the logs (comparator.py `_EPS`). */
export const LOG_EPS = 1e-10;
export const BINS = 201;

export type Direction = "above" | "below";
export const DIRECTIONS: readonly Direction[] = ["above", "below"];

/** Fixed clip ranges per feature. entropy and confidence are comparator.py's defaults. */
export const DEFAULT_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  entropy: [0.0, 2.5],
  confidence: [-2.5, 10.0],
  loss: [0.0, 10.0],
};

export type Strategy = "custom" | "max-attack" | "max-success" | "common";
export const STRATEGIES: readonly Strategy[] = ["custom", "max-attack", "max-success", "common"];
export const STRATEGY_LABELS: Readonly<Record<Strategy, string>> = {
  custom: "custom threshold",
  "max-attack": "max attack score",
  "max-success": "max success rate",
  common: "common threshold",
};

/** The range of a feature: the API's `ranges[feature]` when it sends one, else the default. */
export function featureRange(
  feature: string,
  ranges?: Record<string, readonly [number, number] | number[]> | null,
): [number, number] {
  const r = ranges?.[feature] ?? DEFAULT_RANGES[feature];
  if (!r || r.length !== 2 || !(Number(r[0]) < Number(r[1]))) {
    throw new Error(`no threshold range for the attack feature '${feature}'`);
  }
  return [Number(r[0]), Number(r[1])];
}

/** numpy.linspace(lo, hi, n) with endpoint: i * ((hi - lo) / (n - 1)) + lo, the last = hi. */
export function linspace(lo: number, hi: number, n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`linspace needs n >= 1, got ${n}`);
  if (n === 1) return [lo];
  const step = (hi - lo) / (n - 1);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = i * step + lo;
  out[n - 1] = hi;
  return out;
}

/** numpy.clip for one value. */
export function clip(v: number, lo: number, hi: number): number {
  return Math.min(Math.max(v, lo), hi);
}

/** The finite values (nulls, NaN and infinities dropped), clipped to [lo, hi], sorted ascending. */
export function prepare(values: ReadonlyArray<number | null>, lo: number, hi: number): Float64Array {
  const out: number[] = [];
  for (const v of values) if (v !== null && Number.isFinite(v)) out.push(clip(v, lo, hi));
  const a = Float64Array.from(out);
  a.sort();
  return a;
}

/** How many values of the ascending array are >= t (binary search). */
export function countAtLeast(sorted: Float64Array, t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return sorted.length - lo;
}

/** eps(t), FQ(t) and the attack score from FPR and FNR, exactly as comparator.attack_scores. */
export function forgetQuality(fpr: number, fnr: number, delta: number = DELTA): { eps: number; fq: number; attackScore: number } {
  const sfp = clip(fpr, LOG_EPS, 1 - delta - LOG_EPS);
  const sfn = clip(fnr, LOG_EPS, 1 - delta - LOG_EPS);
  const eps = Math.max(0.0, Math.min(Math.log(1 - delta - sfp) - Math.log(sfn), Math.log(1 - delta - sfn) - Math.log(sfp)));
  let fq: number;
  if (fpr === 0 && fnr === 0) fq = 0.0;
  else if (fpr >= 1 - delta || fnr >= 1 - delta) fq = 1.0;
  else fq = 2.0 ** -eps;
  return { eps, fq, attackScore: 1.0 - fq };
}

/** comparator.attack_scores: the attack score of "value >= t means positive", per threshold. */
export function attackScores(
  pos: ReadonlyArray<number>,
  neg: ReadonlyArray<number>,
  thresholds: ReadonlyArray<number>,
  delta: number = DELTA,
): number[] {
  const p = Float64Array.from(pos).sort();
  const n = Float64Array.from(neg).sort();
  return thresholds.map((t) => {
    const tpr = countAtLeast(p, t) / p.length;
    const fpr = countAtLeast(n, t) / n.length;
    return forgetQuality(fpr, 1.0 - tpr, delta).attackScore;
  });
}

/** One model's members (forget) and non-members (holdout) for one feature, clipped and sorted. */
export interface FeatureSets {
  forget: Float64Array;
  holdout: Float64Array;
  range: [number, number];
}

export function featureSets(
  forget: ReadonlyArray<number | null>,
  holdout: ReadonlyArray<number | null>,
  range: [number, number],
): FeatureSets {
  const f = prepare(forget, range[0], range[1]);
  const h = prepare(holdout, range[0], range[1]);
  if (f.length === 0 || h.length === 0) {
    throw new Error("the attack needs finite feature values on both the forget set and the holdout");
  }
  return { forget: f, holdout: h, range };
}

/** The outcome of one threshold rule, in member terms (members = forget set). */
export interface AttackPoint {
  threshold: number;
  direction: Direction;
  /** members predicted as members / members */
  tpr: number;
  /** non-members predicted as members / non-members */
  fpr: number;
  /** (members predicted members + non-members predicted non-members) / everyone */
  accuracy: number;
  eps: number;
  fq: number;
  attackScore: number;
}

/**
 * The rule at threshold t and direction: "above" predicts member for value >= t, "below"
 * for value < t. eps/FQ/attack score are computed as the Python does (for "below" the sets
 * are swapped under the ">=" rule, which gives the same eps).
 */
export function evaluate(sets: FeatureSets, t: number, direction: Direction, delta: number = DELTA): AttackPoint {
  const nf = sets.forget.length;
  const nh = sets.holdout.length;
  const cf = countAtLeast(sets.forget, t); // forget >= t
  const ch = countAtLeast(sets.holdout, t); // holdout >= t
  let q: { eps: number; fq: number; attackScore: number };
  let tp: number;
  let fp: number;
  if (direction === "above") {
    q = forgetQuality(ch / nh, 1.0 - cf / nf, delta);
    tp = cf;
    fp = ch;
  } else {
    q = forgetQuality(cf / nf, 1.0 - ch / nh, delta);
    tp = nf - cf;
    fp = nh - ch;
  }
  return {
    threshold: t,
    direction,
    tpr: tp / nf,
    fpr: fp / nh,
    accuracy: (tp + (nh - fp)) / (nf + nh),
    eps: q.eps,
    fq: q.fq,
    attackScore: q.attackScore,
  };
}

/** The grid of thresholds of a range. */
export function thresholdGrid(range: [number, number], bins: number = BINS): number[] {
  return linspace(range[0], range[1], bins);
}

/** Every grid threshold in both directions: sweep[direction][i]. */
export type Sweep = Record<Direction, AttackPoint[]>;

export function sweep(sets: FeatureSets, bins: number = BINS, delta: number = DELTA): Sweep {
  const grid = thresholdGrid(sets.range, bins);
  return {
    above: grid.map((t) => evaluate(sets, t, "above", delta)),
    below: grid.map((t) => evaluate(sets, t, "below", delta)),
  };
}

/** The first maximum of key over "above" then "below" (a later one wins only when strictly larger). */
export function best(s: Sweep, key: "attackScore" | "accuracy"): AttackPoint {
  let out: AttackPoint | null = null;
  for (const d of DIRECTIONS) for (const p of s[d]) if (out === null || p[key] > out[key]) out = p;
  if (out === null) throw new Error("empty sweep");
  return out;
}

/** Custom threshold: the direction with the larger attack score at t ("above" on a tie). */
export function atThreshold(sets: FeatureSets, t: number, delta: number = DELTA): AttackPoint {
  const a = evaluate(sets, t, "above", delta);
  const b = evaluate(sets, t, "below", delta);
  return b.attackScore > a.attackScore ? b : a;
}

/**
 * Common threshold: one (t, direction) on the grid for both models, maximising the sum of
 * their attack scores (the Comparator's rule); the first maximum wins.
 */
export function commonThreshold(a: Sweep, b: Sweep): { threshold: number; direction: Direction; index: number } {
  let bestSum = -Infinity;
  let out = { threshold: NaN, direction: "above" as Direction, index: -1 };
  for (const d of DIRECTIONS) {
    for (let i = 0; i < a[d].length; i++) {
      const s = a[d][i].attackScore + b[d][i].attackScore;
      if (s > bestSum) {
        bestSum = s;
        out = { threshold: a[d][i].threshold, direction: d, index: i };
      }
    }
  }
  return out;
}

/** The worst-case privacy score 1 - max attack score over the given sweeps (every feature, both directions). */
export function privacyScore(sweeps: ReadonlyArray<Sweep>): number {
  let m = 0;
  for (const s of sweeps) m = Math.max(m, best(s, "attackScore").attackScore);
  return Math.min(Math.max(1 - m, 0), 1);
}

/** The result of a strategy for both models of a pair on one feature. */
export interface StrategyResult {
  a: AttackPoint;
  b: AttackPoint;
}

/**
 * Apply a strategy. `threshold` is used by "custom" only (direction chosen per model as in
 * atThreshold); "max-attack" and "max-success" choose per model; "common" one rule for both.
 */
export function applyStrategy(
  strategy: Strategy,
  a: FeatureSets,
  b: FeatureSets,
  threshold: number,
  bins: number = BINS,
  delta: number = DELTA,
): StrategyResult {
  if (strategy === "custom") return { a: atThreshold(a, threshold, delta), b: atThreshold(b, threshold, delta) };
  const sa = sweep(a, bins, delta);
  const sb = sweep(b, bins, delta);
  if (strategy === "max-attack") return { a: best(sa, "attackScore"), b: best(sb, "attackScore") };
  if (strategy === "max-success") return { a: best(sa, "accuracy"), b: best(sb, "accuracy") };
  const c = commonThreshold(sa, sb);
  return { a: sa[c.direction][c.index], b: sb[c.direction][c.index] };
}

/** Histogram counts of (already clipped) values over `nbins` equal bins of [lo, hi]; hi falls in the last bin. */
export function histogram(values: ArrayLike<number>, lo: number, hi: number, nbins: number): number[] {
  const counts = new Array<number>(nbins).fill(0);
  const w = (hi - lo) / nbins;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    counts[binOf(v, lo, w, nbins)]++;
  }
  return counts;
}

/** The histogram bin of a value (clipped into [0, nbins - 1]). */
export function binOf(v: number, lo: number, width: number, nbins: number): number {
  const k = Math.floor((v - lo) / width);
  return k < 0 ? 0 : k >= nbins ? nbins - 1 : k;
}

/**
 * comparator.comparator_privacy over precomputed features: the worst-case privacy score of an
 * unlearned model against the reference on the forget set (positives = the unlearned model's
 * values, or the reference's), entropy and confidence by default.
 */
export function comparatorPrivacy(
  unlearned: Record<string, ReadonlyArray<number | null>>,
  reference: Record<string, ReadonlyArray<number | null>>,
  features: readonly string[] = ["entropy", "confidence"],
  ranges?: Record<string, readonly [number, number] | number[]> | null,
  bins: number = BINS,
  delta: number = DELTA,
): { privacy: number; attack: string; threshold: number; perFeature: Record<string, number> } {
  let privacy = 1.0;
  let attack = "";
  let threshold = NaN;
  const perFeature: Record<string, number> = {};
  for (const name of features) {
    const [lo, hi] = featureRange(name, ranges);
    const u = Array.from(prepareUnsorted(unlearned[name] ?? [], lo, hi));
    const r = Array.from(prepareUnsorted(reference[name] ?? [], lo, hi));
    const thr = linspace(lo, hi, bins);
    let bestFeature = 1.0;
    for (const [direction, pos, neg] of [
      ["unlearned", u, r],
      ["reference", r, u],
    ] as const) {
      const a = attackScores(pos, neg, thr, delta);
      let i = 0;
      for (let k = 1; k < a.length; k++) if (a[k] > a[i]) i = k;
      bestFeature = Math.min(bestFeature, 1.0 - a[i]);
      if (1.0 - a[i] < privacy) {
        privacy = 1.0 - a[i];
        attack = `${name}>=t:${direction}`;
        threshold = thr[i];
      }
    }
    perFeature[name] = bestFeature;
  }
  return { privacy: Math.min(Math.max(privacy, 0.0), 1.0), attack, threshold, perFeature };
}

function prepareUnsorted(values: ReadonlyArray<number | null>, lo: number, hi: number): number[] {
  const out: number[] = [];
  for (const v of values) if (v !== null && Number.isFinite(v)) out.push(clip(v, lo, hi));
  return out;
}
