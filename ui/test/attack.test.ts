import { describe, expect, it } from "vitest";
import {
  DELTA,
  applyStrategy,
  atThreshold,
  attackScores,
  best,
  binOf,
  commonThreshold,
  countAtLeast,
  evaluate,
  featureRange,
  featureSets,
  forgetQuality,
  histogram,
  linspace,
  prepare,
  privacyScore,
  sweep,
} from "../src/attack";

// computed by unlearnkit.evaluation.comparator.attack_scores (numpy) for these inputs
const PY = {
  pos: [1.063, 0.934, 1.32, 1.052, 0.732, 1.181, 1.652, 1.474, 0.648, 0.367, 0.688, 1.021],
  neg: [0.337, 1.391, 0.877, 1.134, 1.228, 1.342, 1.706, 2.021, 1.436],
  thr: [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5],
  above: [0.0, 0.0, 0.021096025740560798, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
  below: [0.0, 0.0, 0.0, 0.18077640241658333, 0.18077548980101354, 0.3041900620231026, 0.10763374876018994,
    0.07839083783739076, 0.07839083783739076, 0.0, 0.0],
};

describe("linspace", () => {
  it("matches numpy.linspace", () => {
    const g = linspace(-2.5, 10, 201);
    expect(g.length).toBe(201);
    // numpy.linspace(-2.5, 10, 201)[[0, 1, 57, 100, 199, 200]]
    expect([g[0], g[1], g[57], g[100], g[199], g[200]]).toEqual([-2.5, -2.4375, 1.0625, 3.75, 9.9375, 10.0]);
    expect(linspace(0, 2.5, 11)).toEqual(PY.thr);
    expect(linspace(3, 4, 1)).toEqual([3]);
  });
});

describe("forgetQuality", () => {
  it("is 0 when FPR = FNR = 0 (a perfect attack scores 1)", () => {
    expect(forgetQuality(0, 0)).toMatchObject({ fq: 0, attackScore: 1 });
  });
  it("is 1 when FPR or FNR >= 1 - delta", () => {
    expect(forgetQuality(1, 0).fq).toBe(1);
    expect(forgetQuality(0, 1).fq).toBe(1);
    expect(forgetQuality(1 - DELTA, 0.3).fq).toBe(1);
  });
  it("follows eps = max(0, min(log(1-d-FPR) - log FNR, log(1-d-FNR) - log FPR))", () => {
    const fpr = 0.1;
    const fnr = 0.2;
    const eps = Math.max(0, Math.min(Math.log(1 - DELTA - fpr) - Math.log(fnr), Math.log(1 - DELTA - fnr) - Math.log(fpr)));
    const q = forgetQuality(fpr, fnr);
    expect(q.eps).toBeCloseTo(eps, 15);
    expect(q.fq).toBeCloseTo(2 ** -eps, 15);
    expect(q.attackScore).toBeCloseTo(1 - 2 ** -eps, 15);
    // a random guess (FPR + FNR = 1) has eps 0
    expect(forgetQuality(0.3, 0.7).attackScore).toBeCloseTo(0, 12);
  });
  it("clips FPR = 0 inside the logs to 1e-10", () => {
    const q = forgetQuality(0, 0.5);
    const eps = Math.min(Math.log(1 - DELTA - 1e-10) - Math.log(0.5), Math.log(1 - DELTA - 0.5) - Math.log(1e-10));
    expect(q.eps).toBeCloseTo(eps, 12);
  });
});

describe("attackScores mirrors the Python", () => {
  it("both directions (sets swapped) equal numpy's output", () => {
    const a = attackScores(PY.pos, PY.neg, PY.thr);
    const b = attackScores(PY.neg, PY.pos, PY.thr);
    a.forEach((v, i) => expect(Math.abs(v - PY.above[i])).toBeLessThan(1e-12));
    b.forEach((v, i) => expect(Math.abs(v - PY.below[i])).toBeLessThan(1e-12));
  });
  it("evaluate() gives the same scores in member terms", () => {
    const sets = featureSets(PY.pos, PY.neg, [0, 2.5]);
    PY.thr.forEach((t, i) => {
      expect(Math.abs(evaluate(sets, t, "above").attackScore - PY.above[i])).toBeLessThan(1e-12);
      expect(Math.abs(evaluate(sets, t, "below").attackScore - PY.below[i])).toBeLessThan(1e-12);
    });
  });
});

describe("rates at a threshold", () => {
  const sets = featureSets([1, 2, 3, 4], [0, 1, 1, 5, 6, 7], [0, 10]);
  it("above: member when value >= t", () => {
    const p = evaluate(sets, 2, "above");
    expect(p.tpr).toBe(3 / 4); // 2, 3, 4
    expect(p.fpr).toBe(3 / 6); // 5, 6, 7
    expect(p.accuracy).toBe((3 + 3) / 10);
  });
  it("below: member when value < t", () => {
    const p = evaluate(sets, 2, "below");
    expect(p.tpr).toBe(1 / 4); // 1
    expect(p.fpr).toBe(3 / 6); // 0, 1, 1
    expect(p.accuracy).toBe((1 + 3) / 10);
  });
  it("a perfectly separating threshold scores 1", () => {
    const s = featureSets([0.1, 0.2], [0.8, 0.9], [0, 1]);
    const p = evaluate(s, 0.5, "below");
    expect(p).toMatchObject({ tpr: 1, fpr: 0, accuracy: 1, attackScore: 1 });
    expect(evaluate(s, 0.5, "above").attackScore).toBe(0);
    expect(atThreshold(s, 0.5).direction).toBe("below");
  });
  it("clips values to the range and drops nulls", () => {
    expect(Array.from(prepare([-3, null, 0.5, 99, NaN], 0, 2.5))).toEqual([0, 0.5, 2.5]);
    expect(() => featureSets([null], [1], [0, 1])).toThrow(/finite/);
  });
  it("countAtLeast counts values >= t", () => {
    const a = Float64Array.from([1, 2, 2, 3]);
    expect([0, 1, 2, 2.5, 3, 4].map((t) => countAtLeast(a, t))).toEqual([4, 4, 3, 1, 1, 0]);
  });
});

describe("strategies", () => {
  const a = featureSets([0.1, 0.2, 0.3, 1.5], [1.0, 1.2, 1.4, 0.25], [0, 2.5]);
  const b = featureSets([1.0, 1.1, 1.3, 0.2], [1.05, 1.2, 1.25, 0.3], [0, 2.5]);
  it("max attack score is the largest score over the grid and both directions", () => {
    const s = sweep(a);
    const top = best(s, "attackScore");
    for (const d of ["above", "below"] as const) for (const p of s[d]) expect(p.attackScore).toBeLessThanOrEqual(top.attackScore);
    expect(applyStrategy("max-attack", a, b, 0).a).toEqual(top);
  });
  it("max success rate is the largest accuracy", () => {
    const s = sweep(b);
    const top = best(s, "accuracy");
    for (const d of ["above", "below"] as const) for (const p of s[d]) expect(p.accuracy).toBeLessThanOrEqual(top.accuracy);
    expect(applyStrategy("max-success", a, b, 0).b).toEqual(top);
  });
  it("common threshold applies one rule to both models, maximising the sum", () => {
    const r = applyStrategy("common", a, b, 0);
    expect(r.a.threshold).toBe(r.b.threshold);
    expect(r.a.direction).toBe(r.b.direction);
    const sa = sweep(a);
    const sb = sweep(b);
    const c = commonThreshold(sa, sb);
    for (const d of ["above", "below"] as const)
      sa[d].forEach((p, i) => expect(p.attackScore + sb[d][i].attackScore).toBeLessThanOrEqual(r.a.attackScore + r.b.attackScore));
    expect(c.threshold).toBe(r.a.threshold);
  });
  it("custom uses the given threshold", () => {
    const r = applyStrategy("custom", a, b, 0.7);
    expect(r.a.threshold).toBe(0.7);
    expect(r.b.threshold).toBe(0.7);
  });
  it("privacy score = 1 - worst attack score", () => {
    const s = sweep(a);
    expect(privacyScore([s])).toBeCloseTo(1 - best(s, "attackScore").attackScore, 15);
    expect(privacyScore([])).toBe(1);
  });
});

describe("ranges and histograms", () => {
  it("uses the Python defaults and an API override", () => {
    expect(featureRange("entropy")).toEqual([0, 2.5]);
    expect(featureRange("confidence")).toEqual([-2.5, 10]);
    expect(featureRange("loss", { loss: [0, 4] })).toEqual([0, 4]);
    expect(() => featureRange("nope")).toThrow(/range/);
  });
  it("bins values, the top edge in the last bin", () => {
    expect(histogram([0, 0.1, 0.5, 0.99, 1], 0, 1, 2)).toEqual([2, 3]);
    expect(binOf(-1, 0, 0.5, 2)).toBe(0);
  });
});
