import { describe, expect, it } from "vitest";
import { legendItemWidth, legendLayout } from "../src/charts";

// the CKA chart's legend: five series in a chart of 380 px (few layers), plot width 320
const CKA = ["A vs original", "A vs reference", "B vs original", "B vs reference", "A vs B"];

describe("legendLayout", () => {
  it("keeps every item on one row without a width", () => {
    const at = legendLayout(CKA);
    expect(at.map((p) => p.row)).toEqual([0, 0, 0, 0, 0]);
    expect(at[0].dx).toBe(0);
    expect(at[1].dx).toBeCloseTo(legendItemWidth(CKA[0]), 9);
  });

  it("wraps onto new rows so that no item's text passes the width", () => {
    for (const width of [120, 200, 320, 336, 500]) {
      const at = legendLayout(CKA, width);
      at.forEach((p, i) => {
        // an item ends 7 px before its width (the spacing before the next one)
        if (p.dx > 0) expect(p.dx + legendItemWidth(CKA[i]) - 7).toBeLessThanOrEqual(width);
        if (i > 0) expect(p.row === at[i - 1].row ? p.dx > at[i - 1].dx : p.dx === 0 && p.row === at[i - 1].row + 1).toBe(true);
      });
    }
    expect(Math.max(...legendLayout(CKA, 320).map((p) => p.row))).toBeGreaterThan(0);
    expect(legendLayout(CKA, 2000).every((p) => p.row === 0)).toBe(true);
  });

  it("puts an item wider than the width alone on its row", () => {
    const at = legendLayout(["a very long label that does not fit anywhere", "x"], 100);
    expect(at).toEqual([
      { dx: 0, row: 0 },
      { dx: 0, row: 1 },
    ]);
    expect(legendLayout([], 100)).toEqual([]);
  });
});
