// A uniform grid over 2-D points: rectangle queries (brushing) and nearest-point look-ups
// (hover) touch only the cells they need, so 10,000 points brush in well under a frame.

export class GridIndex {
  readonly n: number;
  private readonly minX: number;
  private readonly minY: number;
  private readonly cw: number;
  private readonly ch: number;
  private readonly nx: number;
  private readonly ny: number;
  private readonly start: Int32Array;
  private readonly items: Int32Array;

  constructor(
    private readonly xs: ArrayLike<number>,
    private readonly ys: ArrayLike<number>,
    cellsPerSide?: number,
  ) {
    const n = xs.length;
    this.n = n;
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = xs[i];
      const y = ys[i];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
    if (minX === Infinity) {
      minX = minY = 0;
      maxX = maxY = 1;
    }
    const side = cellsPerSide ?? Math.max(1, Math.min(256, Math.round(Math.sqrt(n / 4))));
    this.nx = side;
    this.ny = side;
    this.minX = minX;
    this.minY = minY;
    this.cw = (maxX - minX || 1) / side;
    this.ch = (maxY - minY || 1) / side;
    const cellOf = new Int32Array(n);
    const counts = new Int32Array(side * side + 1);
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) {
        cellOf[i] = -1;
        continue;
      }
      const c = this.cy(ys[i]) * side + this.cx(xs[i]);
      cellOf[i] = c;
      counts[c + 1]++;
    }
    for (let c = 0; c < side * side; c++) counts[c + 1] += counts[c];
    this.start = counts;
    const fill = counts.slice(0, side * side);
    const items = new Int32Array(counts[side * side]);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) items[fill[cellOf[i]]++] = i;
    this.items = items;
  }

  private cx(x: number): number {
    const k = Math.floor((x - this.minX) / this.cw);
    return k < 0 ? 0 : k >= this.nx ? this.nx - 1 : k;
  }

  private cy(y: number): number {
    const k = Math.floor((y - this.minY) / this.ch);
    return k < 0 ? 0 : k >= this.ny ? this.ny - 1 : k;
  }

  /** Indices of the points inside the rectangle (corners in any order, edges included), ascending. */
  query(x0: number, y0: number, x1: number, y1: number): number[] {
    const lx = Math.min(x0, x1);
    const hx = Math.max(x0, x1);
    const ly = Math.min(y0, y1);
    const hy = Math.max(y0, y1);
    const out: number[] = [];
    const ax = this.cx(lx);
    const bx = this.cx(hx);
    const ay = this.cy(ly);
    const by = this.cy(hy);
    for (let gy = ay; gy <= by; gy++) {
      for (let gx = ax; gx <= bx; gx++) {
        const c = gy * this.nx + gx;
        for (let k = this.start[c]; k < this.start[c + 1]; k++) {
          const i = this.items[k];
          const x = this.xs[i];
          const y = this.ys[i];
          if (x >= lx && x <= hx && y >= ly && y <= hy) out.push(i);
        }
      }
    }
    return out.sort((p, q) => p - q);
  }

  /** The point nearest (x, y) within the ellipse of radii (rx, ry), or -1. */
  nearest(x: number, y: number, rx: number, ry: number = rx): number {
    const cand = this.query(x - rx, y - ry, x + rx, y + ry);
    let best = -1;
    let bd = Infinity;
    for (const i of cand) {
      const dx = (this.xs[i] - x) / rx;
      const dy = (this.ys[i] - y) / ry;
      const d = dx * dx + dy * dy;
      if (d <= 1 && d < bd) {
        bd = d;
        best = i;
      }
    }
    return best;
  }
}
