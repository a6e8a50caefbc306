import { describe, expect, it } from "vitest";
import { GridIndex } from "../src/gridindex";

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe("GridIndex", () => {
  const r = lcg(7);
  const n = 10000;
  const xs = Float64Array.from({ length: n }, () => r() * 20 - 10);
  const ys = Float64Array.from({ length: n }, () => r() * 4 + 3);
  const idx = new GridIndex(xs, ys);

  it("a rectangle query returns exactly the points inside (brute force)", () => {
    for (const [x0, y0, x1, y1] of [
      [-3, 4, 2.5, 5.5],
      [5, 6.9, -1, 3.2],
      [-100, -100, 100, 100],
      [11, 0, 12, 1],
    ]) {
      const want: number[] = [];
      for (let i = 0; i < n; i++)
        if (xs[i] >= Math.min(x0, x1) && xs[i] <= Math.max(x0, x1) && ys[i] >= Math.min(y0, y1) && ys[i] <= Math.max(y0, y1)) want.push(i);
      expect(idx.query(x0, y0, x1, y1)).toEqual(want);
    }
  });

  it("nearest finds the closest point within the radius, or -1", () => {
    const i = idx.nearest(xs[42], ys[42], 1e-9);
    expect(i).toBe(42);
    let best = -1;
    let bd = Infinity;
    for (let k = 0; k < n; k++) {
      const d = (xs[k] - 0.3) ** 2 + ((ys[k] - 5) / 0.5) ** 2;
      if (d < bd) {
        bd = d;
        best = k;
      }
    }
    expect(idx.nearest(0.3, 5, 1, 0.5)).toBe(best);
    expect(idx.nearest(50, 50, 1)).toBe(-1);
  });

  it("handles no points, one point and non-finite points", () => {
    expect(new GridIndex([], []).query(0, 0, 1, 1)).toEqual([]);
    expect(new GridIndex([2], [2]).query(0, 0, 3, 3)).toEqual([0]);
    expect(new GridIndex([1, NaN, 2], [1, 1, 2]).query(0, 0, 3, 3)).toEqual([0, 2]);
  });
});
