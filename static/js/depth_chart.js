// The cumulative depth chart of one order book: bids and asks as stepped areas of their
// running totals, either side of the mid. An SVG (a few paths, no canvas: its colours come
// from the stylesheet, so the trader's palette applies without a redraw); the geometry is
// a pure function (depthGeometry), the drawing happens at most once per animation frame.

import { formatPrice, formatSize } from "./format.js";
import { requestWrite } from "./frame.js";

const SVG = "http://www.w3.org/2000/svg";
export const DEPTH_W = 400;
export const DEPTH_H = 160;

// The spread's share of the width at most: a spread far wider than the levels' own span
// would leave the middle empty and squeeze both sides against the edges.
const MAX_GAP = 0.12;

/**
 * The chart's paths for an OrderBook (its best ``levels`` per side), in a DEPTH_W x
 * DEPTH_H box: x is price, the mid in the middle and the farthest shown level near an
 * edge (one scale for both sides; the spread between the best bid and ask is drawn
 * narrower than to scale, `compressed`, when it would take more than MAX_GAP of the
 * width); y the running total (the larger side's total near the top). Null when a side
 * is empty.
 */
export function depthGeometry(book, levels, width = DEPTH_W, height = DEPTH_H) {
  const bids = book.cumulative("bids", levels);
  const asks = book.cumulative("asks", levels);
  const mid = book.mid();
  if (mid === null || !bids.length || !asks.length) return null;
  const bestBid = bids[0].price;
  const bestAsk = asks[0].price;
  const half = width / 2;
  const spreadHalf = (bestAsk - bestBid) / 2;
  const span = Math.max(bestBid - bids[bids.length - 1].price, asks[asks.length - 1].price - bestAsk);
  // Pixels per price unit, to scale; and the gap either side of the mid.
  let scale = (half * 0.96) / (spreadHalf + span || 1);
  let gap = spreadHalf * scale;
  const compressed = span > 0 && gap > MAX_GAP * half;
  if (compressed) {
    gap = MAX_GAP * half;
    scale = (half * 0.96 - gap) / span;
  }
  const top = Math.max(bids[bids.length - 1].total, asks[asks.length - 1].total) * 1.1 || 1;
  const x = (price) => (price <= bestBid ? half - gap - (bestBid - price) * scale : half + gap + (price - bestAsk) * scale);
  const y = (total) => height - (total / top) * height;
  const f = (v) => Math.round(v * 100) / 100;
  const step = (levelsOf, edge) => {
    // From the best level outwards: up to its total, across to the next price, up again.
    let line = `M${f(x(levelsOf[0].price))} ${height}V${f(y(levelsOf[0].total))}`;
    for (let i = 1; i < levelsOf.length; i += 1) {
      line += `H${f(x(levelsOf[i].price))}V${f(y(levelsOf[i].total))}`;
    }
    line += `H${edge}`;
    return { line, area: `${line}V${height}Z` };
  };
  const bid = step(bids, 0);
  const ask = step(asks, width);
  return {
    bidLine: bid.line,
    bidArea: bid.area,
    askLine: ask.line,
    askArea: ask.area,
    midX: f(half),
    compressed,
    bidTotal: bids[bids.length - 1].total,
    askTotal: asks[asks.length - 1].total,
    bestBid: bids[0].price,
    bestAsk: asks[0].price,
    levels: Math.max(bids.length, asks.length),
  };
}

export class DepthChart {
  /**
   * @param {HTMLElement} root `.depth`: holds the `svg.depth-chart` (role="img") and its `.depth-legend`
   * @param {number} levels levels per side drawn
   */
  constructor(root, levels) {
    this.root = root;
    this.levels = levels;
    this.svg = root.querySelector("svg.depth-chart");
    this.svg.setAttribute("viewBox", `0 0 ${DEPTH_W} ${DEPTH_H}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    const path = (cls) => {
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("class", cls);
      return p;
    };
    this.paths = {
      bidArea: path("bid-area"),
      askArea: path("ask-area"),
      bidLine: path("bid-line"),
      askLine: path("ask-line"),
      mid: path("mid"),
    };
    this.svg.replaceChildren(...Object.values(this.paths));
    this.legend = {
      bid: root.querySelector(".depth-legend .bid-total"),
      ask: root.querySelector(".depth-legend .ask-total"),
      mid: root.querySelector(".depth-legend .mid-px"),
    };
    this.book = null;
    this.symbol = "";
    this.precision = 2;
    this.drawn = -1;
    this.stats = { draws: 0 };
    this.draw = () => this.render();
  }

  /** Draw ``book`` (an OrderBook) on the next frame; calls within one frame draw once. */
  update(book, symbol, precision) {
    this.book = book;
    this.symbol = symbol;
    this.precision = precision;
    requestWrite(this.draw);
  }

  clear() {
    this.book = null;
    this.drawn = -1;
    requestWrite(this.draw);
  }

  render() {
    const book = this.book;
    if (book && book.version === this.drawn) return;
    this.drawn = book ? book.version : -1;
    const g = book ? depthGeometry(book, this.levels) : null;
    const p = this.paths;
    const setD = (el, d) => {
      if (el.getAttribute("d") !== d) el.setAttribute("d", d);
    };
    const set = (el, text) => {
      if (el && el.textContent !== text) el.textContent = text;
    };
    if (!g) {
      for (const el of Object.values(p)) setD(el, "");
      set(this.legend.bid, "—");
      set(this.legend.ask, "—");
      set(this.legend.mid, "—");
      // No book yet, or an empty one (a halted symbol's book is empty).
      const why = book?.ready ? "the book is empty" : "waiting for the book";
      this.label(this.symbol ? `Cumulative depth of ${this.symbol}: ${why}` : "Cumulative depth: no symbol");
      this.root.dataset.state = "empty";
      return;
    }
    setD(p.bidArea, g.bidArea);
    setD(p.askArea, g.askArea);
    setD(p.bidLine, g.bidLine);
    setD(p.askLine, g.askLine);
    setD(p.mid, `M${g.midX} 0V${DEPTH_H}`);
    const pr = this.precision;
    set(this.legend.bid, formatSize(g.bidTotal));
    set(this.legend.ask, formatSize(g.askTotal));
    // The mid of two prices may fall half a tick between them: one more digit only then.
    const mid = (g.bestBid + g.bestAsk) / 2;
    const onTick = Math.abs(mid * 10 ** pr - Math.round(mid * 10 ** pr)) < 1e-6;
    set(this.legend.mid, formatPrice(mid, onTick ? pr : pr + 1));
    this.label(
      `Cumulative depth of ${this.symbol}: best bid ${formatPrice(g.bestBid, pr)}, best ask ${formatPrice(g.bestAsk, pr)};` +
        ` ${formatSize(g.bidTotal)} bid and ${formatSize(g.askTotal)} ask over ${g.levels} levels`,
    );
    this.root.dataset.state = "drawn";
    this.root.dataset.gap = g.compressed ? "compressed" : "to-scale";
    this.stats.draws += 1;
  }

  label(text) {
    if (this.svg.getAttribute("aria-label") !== text) this.svg.setAttribute("aria-label", text);
  }
}
