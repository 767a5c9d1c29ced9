// The order book of one symbol: a pure model (OrderBook) fed by the stream's "depth"
// channel, and its price ladder (LadderView) written once per animation frame.
//
// The wire (docs/protocol.md): a `depth_snapshot` sets the book; each `depth` frame sets
// the levels it names (size 0 removes one) and continues the previous frame's `u` with
// `U = u + 1` in the same `epoch`. Any other `U` or epoch is a gap: applyDiff answers
// "gap" and the caller asks the stream for a fresh snapshot (StreamClient.resyncDepth);
// frames until that snapshot are ignored ("pending"). Only the best `levels` per side
// are kept, so the model never grows past what the client subscribed to.

import { formatPrice, formatSize } from "./format.js";

const BIDS = "bids";
const ASKS = "asks";

function sorted(map, side) {
  const levels = [...map.entries()];
  levels.sort(side === BIDS ? (a, b) => b[0] - a[0] : (a, b) => a[0] - b[0]);
  return levels;
}

export class OrderBook {
  constructor(symbol = null, levels = 20) {
    this.reset(symbol, levels);
  }

  /** Forget everything: a new symbol (or none) and the number of levels kept per side. */
  reset(symbol, levels = this.levels) {
    this.symbol = symbol;
    this.levels = levels;
    this.epoch = null;
    this.u = null; // null: no book to continue (none yet, or a gap waiting for its snapshot)
    this.ts = null;
    this.maps = { [BIDS]: new Map(), [ASKS]: new Map() };
    this.sides = { [BIDS]: [], [ASKS]: [] }; // best first: [price, size]
    this.changes = new Map(); // "bids:price" -> "up" | "down", since the last takeChanges()
    this.version = (this.version ?? 0) + 1; // never repeats, so a view can tell any two books apart
    this.stats = { snapshots: 0, diffs: 0, gaps: 0, stale: 0 };
  }

  /** Whether diffs can be applied (a snapshot arrived and no gap was seen since). */
  get ready() {
    return this.u !== null;
  }

  /** Replace the book by a `depth_snapshot` (or the REST depth answer). */
  applySnapshot(msg) {
    if (msg.symbol !== this.symbol) return "ignored";
    this.epoch = msg.epoch;
    this.u = msg.u;
    this.ts = msg.ts ?? this.ts;
    for (const side of [BIDS, ASKS]) {
      const map = new Map();
      for (const [price, size] of msg[side] || []) if (size > 0) map.set(price, size);
      this.maps[side] = map;
      this.trim(side);
    }
    this.changes.clear(); // a whole new book: nothing "changed" to flash
    this.stats.snapshots += 1;
    this.version += 1;
    return "ok";
  }

  /**
   * Apply a `depth` frame: "ok"; "stale" (already in the book); "pending" (no book to
   * continue, a snapshot is on its way); "gap" (re-subscribe depth for a new snapshot).
   */
  applyDiff(msg) {
    if (msg.symbol !== this.symbol) return "ignored";
    if (!this.ready) return "pending";
    if (msg.epoch === this.epoch && msg.u <= this.u) {
      this.stats.stale += 1;
      return "stale";
    }
    if (msg.epoch !== this.epoch || msg.U !== this.u + 1) {
      this.u = null; // keep showing the old levels until the snapshot replaces them
      this.stats.gaps += 1;
      return "gap";
    }
    for (const side of [BIDS, ASKS]) {
      const map = this.maps[side];
      const changes = msg[side] || [];
      for (const [price, size] of changes) {
        const before = map.get(price) ?? 0;
        if (size > 0) map.set(price, size);
        else map.delete(price);
        if (size !== before) this.changes.set(`${side}:${price}`, size > before ? "up" : "down");
      }
      if (changes.length) this.trim(side);
    }
    // Nobody drew for a while (a hidden tab runs no animation frames): old flashes mean nothing.
    if (this.changes.size > 4 * this.levels) this.changes.clear();
    this.u = msg.u;
    this.ts = msg.ts ?? this.ts;
    this.stats.diffs += 1;
    this.version += 1;
    return "ok";
  }

  trim(side) {
    const levels = sorted(this.maps[side], side);
    if (levels.length > this.levels) {
      for (const [price] of levels.splice(this.levels)) this.maps[side].delete(price);
    }
    this.sides[side] = levels;
  }

  /** The best ``n`` levels of ``side`` ("bids" or "asks"), best first, as [price, size]. */
  best(side, n = this.levels) {
    return this.sides[side].slice(0, n);
  }

  bestBid() {
    return this.sides[BIDS][0] ?? null;
  }

  bestAsk() {
    return this.sides[ASKS][0] ?? null;
  }

  mid() {
    const bid = this.bestBid();
    const ask = this.bestAsk();
    return bid && ask ? (bid[0] + ask[0]) / 2 : null;
  }

  /** Best ask minus best bid, absolute and in basis points of the mid. */
  spread() {
    const bid = this.bestBid();
    const ask = this.bestAsk();
    if (!bid || !ask) return null;
    const abs = ask[0] - bid[0];
    const mid = (ask[0] + bid[0]) / 2;
    return { abs, bps: mid ? (abs / mid) * 10_000 : 0 };
  }

  /** Bid size / (bid + ask size) over the best ``n`` levels of each side (null: empty book). */
  imbalance(n = this.levels) {
    const total = (side) => this.best(side, n).reduce((sum, [, size]) => sum + size, 0);
    const bid = total(BIDS);
    const ask = total(ASKS);
    return bid + ask > 0 ? bid / (bid + ask) : null;
  }

  /** The best ``n`` levels of ``side`` with their running totals: [{price, size, total}]. */
  cumulative(side, n = this.levels) {
    let total = 0;
    return this.best(side, n).map(([price, size]) => {
      total += size;
      return { price, size, total };
    });
  }

  /** The levels whose size changed since the last call: Map "side:price" -> "up" | "down". */
  takeChanges() {
    const changes = this.changes;
    this.changes = new Map();
    return changes;
  }

  /** What the browser tests read (window.tickerBook.info()). */
  info() {
    return {
      symbol: this.symbol,
      epoch: this.epoch,
      u: this.u,
      ready: this.ready,
      bids: this.best(BIDS),
      asks: this.best(ASKS),
      spread: this.spread(),
      imbalance: this.imbalance(),
      stats: { ...this.stats },
    };
  }
}

// ---- the ladder ---------------------------------------------------------------------

/**
 * A price ladder in a <table>: asks above (best nearest the middle), the spread row, bids
 * below, each level with its size (and a bar proportional to it) and running total. Rows
 * are made once; render() writes only the cells whose text changed. A level whose size
 * changed flashes: its size cell gets a CSS animation by alternating two attribute values
 * (a new value restarts the animation), so no timer runs per cell. The flash is neutral:
 * green and red already say bid and ask.
 */
export class LadderView {
  /**
   * @param {HTMLElement} root the `.book` section: holds `table.ladder` and `.imbalance`
   * @param {number} rows levels shown per side
   */
  constructor(root, rows) {
    this.rows = rows;
    this.table = root.querySelector("table.ladder");
    this.spreadAbs = root.querySelector(".ladder .spread-abs");
    this.spreadBps = root.querySelector(".ladder .spread-bps");
    this.imbalance = {
      root: root.querySelector(".imbalance"),
      bid: root.querySelector(".imbalance .imb-bid"),
      bidText: root.querySelector(".imbalance .imb-bid-pct"),
      askText: root.querySelector(".imbalance .imb-ask-pct"),
    };
    this.sides = {};
    for (const side of [ASKS, BIDS]) {
      const body = this.table.querySelector(`tbody.${side}`);
      const made = [];
      for (let i = 0; i < rows; i += 1) made.push(this.row(side));
      body.replaceChildren(...made.map((r) => r.tr));
      // Asks are drawn worst at the top: the row next to the spread (the last) is the best.
      this.sides[side] = side === ASKS ? made.reverse() : made;
    }
    this.text = new Map();
  }

  row(side) {
    const tr = document.createElement("tr");
    tr.dataset.side = side === BIDS ? "bid" : "ask";
    tr.dataset.empty = "true";
    const px = document.createElement("td");
    px.className = "num lv-px";
    const sz = document.createElement("td");
    sz.className = "num lv-sz";
    const bar = document.createElement("span");
    bar.className = "lv-bar";
    bar.setAttribute("aria-hidden", "true");
    const value = document.createElement("span");
    value.className = "lv-v";
    sz.append(bar, value);
    const cum = document.createElement("td");
    cum.className = "num lv-cum";
    tr.append(px, sz, cum);
    return { tr, px, sz, value, bar, cum, price: null, scale: -1, flip: false };
  }

  set(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  /** Write ``book`` (an OrderBook) with ``precision`` decimals. */
  render(book, precision) {
    const changes = book.takeChanges();
    const shown = { [BIDS]: book.cumulative(BIDS, this.rows), [ASKS]: book.cumulative(ASKS, this.rows) };
    let largest = 0;
    for (const side of [BIDS, ASKS]) for (const level of shown[side]) largest = Math.max(largest, level.size);
    for (const side of [BIDS, ASKS]) {
      const rows = this.sides[side];
      for (let i = 0; i < rows.length; i += 1) {
        const r = rows[i];
        const level = shown[side][i];
        if (!level) {
          if (r.price !== null) {
            r.price = null;
            this.set(r.px, "");
            this.set(r.value, "");
            this.set(r.cum, "");
            r.tr.dataset.empty = "true";
            this.scaleBar(r, 0);
          }
          continue;
        }
        if (r.price === null) delete r.tr.dataset.empty;
        r.price = level.price;
        this.set(r.px, formatPrice(level.price, precision));
        this.set(r.value, formatSize(level.size));
        this.set(r.cum, formatSize(level.total));
        this.scaleBar(r, largest ? level.size / largest : 0);
        const moved = changes.get(`${side}:${level.price}`);
        if (moved) {
          r.flip = !r.flip;
          r.sz.dataset.flash = r.flip ? "a" : "b";
          r.sz.dataset.move = moved; // grew or shrank (the flash itself is neutral: colour means side)
        }
      }
    }
    const spread = book.spread();
    this.set(this.spreadAbs, spread ? formatPrice(spread.abs, precision) : "—");
    this.set(this.spreadBps, spread ? `${spread.bps.toFixed(1)} bps` : "");
    const share = book.imbalance(this.rows);
    const im = this.imbalance;
    if (im.root) {
      const pct = share === null ? null : Math.round(share * 100);
      this.set(im.bidText, pct === null ? "—" : `${pct}%`);
      this.set(im.askText, pct === null ? "—" : `${100 - pct}%`);
      const scale = share === null ? 0.5 : share;
      if (im.scale !== scale) {
        im.scale = scale;
        im.bid.style.transform = `scaleX(${scale.toFixed(3)})`;
      }
      const lean = share === null ? "even" : share > 0.55 ? "bids" : share < 0.45 ? "asks" : "even";
      if (im.root.dataset.lean !== lean) im.root.dataset.lean = lean;
    }
  }

  scaleBar(r, fraction) {
    const scale = Math.round(fraction * 1000) / 1000;
    if (r.scale === scale) return;
    r.scale = scale;
    r.bar.style.transform = `scaleX(${scale})`;
  }

  /** Empty every row (no symbol, or a new one whose book has not arrived). */
  clear() {
    for (const side of [BIDS, ASKS]) {
      for (const r of this.sides[side]) {
        r.price = null;
        this.set(r.px, "");
        this.set(r.value, "");
        this.set(r.cum, "");
        r.tr.dataset.empty = "true";
        delete r.sz.dataset.flash;
        this.scaleBar(r, 0);
      }
    }
    this.set(this.spreadAbs, "—");
    this.set(this.spreadBps, "");
    if (this.imbalance.root) {
      this.set(this.imbalance.bidText, "—");
      this.set(this.imbalance.askText, "—");
    }
  }
}
