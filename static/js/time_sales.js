// Time & sales: the trades of one symbol, newest on top (not the movers tape, tape.js).
//
// TimeSales is the pure model: trades from the REST history (GET
// /api/symbols/<S>/trades/, newest first) and from the stream's "trades" channel merge
// into one list, newest first, each trade once (by epoch and id: the two may overlap),
// at most `max` rows. A trade is "large" when its size is at least `largeFactor` times
// the median of the recent sizes (decided when it arrives, so a row never changes).
// Ids rise by 1 per trade of a symbol, so a hole between two rows of one epoch is a trade
// missed (the history answered before the live trades began): hasHole() says so.
// TimeSalesView writes it into a <tbody> once per animation frame, reusing row elements.

import { formatClock, formatPrice, formatSize } from "./format.js";

const MIN_SAMPLES = 10; // no trade is "large" until this many sizes set the median

const key = (t) => `${t.epoch}:${t.id}`;
const newestFirst = (a, b) => b.ts - a.ts || b.id - a.id;

export function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export class TimeSales {
  constructor({ max = 50, window = 200, largeFactor = 5 } = {}) {
    this.max = max;
    this.window = window; // how many recent sizes the median is taken over
    this.largeFactor = largeFactor;
    this.reset(null);
  }

  reset(symbol) {
    this.symbol = symbol;
    this.rows = []; // newest first: {key, symbol, epoch, id, ts, price, size, side, large}
    this.keys = new Set();
    this.sizes = []; // the recent sizes, oldest first
    this.version = (this.version ?? 0) + 1;
    this.stats = { live: 0, filled: 0, duplicates: 0 };
  }

  /** Live trades from the stream (oldest first). Returns how many were new. */
  add(trades) {
    let added = 0;
    for (const t of trades) {
      if (t.symbol !== this.symbol) continue;
      if (this.keys.has(key(t))) {
        this.stats.duplicates += 1;
        continue;
      }
      this.insert(t, this.isLarge(t.size));
      this.remember(t.size);
      added += 1;
    }
    this.stats.live += added;
    if (added) this.settle();
    return added;
  }

  /** Recent trades from the REST endpoint (newest first), merged under the live ones. */
  fill(trades) {
    const fresh = trades.filter((t) => t.symbol === this.symbol && !this.keys.has(key(t)));
    this.stats.duplicates += trades.length - fresh.length;
    if (!fresh.length) return 0;
    // The history sets the median it is judged against: older sizes first, then the live ones.
    this.sizes = [...fresh.map((t) => t.size).reverse(), ...this.sizes].slice(-this.window);
    for (const t of fresh) this.insert(t, this.isLarge(t.size));
    this.stats.filled += fresh.length;
    this.settle();
    return fresh.length;
  }

  insert(t, large) {
    const row = { key: key(t), symbol: t.symbol, epoch: t.epoch, id: t.id, ts: t.ts, price: t.price, size: t.size, side: t.side, large };
    this.rows.push(row);
    this.keys.add(row.key);
  }

  /** Newest first, at most `max` rows; what fell off the end is forgotten. */
  settle() {
    this.rows.sort(newestFirst);
    for (const gone of this.rows.splice(this.max)) this.keys.delete(gone.key);
    this.version += 1;
  }

  /** Whether two neighbouring rows of one epoch are not consecutive trades. */
  hasHole() {
    for (let i = 1; i < this.rows.length; i += 1) {
      const newer = this.rows[i - 1];
      const older = this.rows[i];
      if (newer.epoch === older.epoch && newer.id !== older.id + 1) return true;
    }
    return false;
  }

  isLarge(size) {
    if (this.sizes.length < MIN_SAMPLES) return false;
    const m = median(this.sizes);
    return m > 0 && size >= this.largeFactor * m;
  }

  remember(size) {
    this.sizes.push(size);
    if (this.sizes.length > this.window) this.sizes.splice(0, this.sizes.length - this.window);
  }

  median() {
    return median(this.sizes);
  }
}

/** The tape's rows in a <tbody>: time (the trader's clock), price, size, aggressor side. */
export class TimeSalesView {
  constructor(tbody) {
    this.tbody = tbody;
    this.made = new Map(); // row key -> {tr, time}
    this.drawn = -1;
    this.clockDrawn = null;
  }

  row(t, precision) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(t.id);
    tr.dataset.side = t.side;
    if (t.large) tr.dataset.large = "true";
    const cell = (cls, text) => {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      tr.append(td);
      return td;
    };
    const time = cell("ts-time", formatClock(t.ts, "tick"));
    cell("num ts-px", formatPrice(t.price, precision));
    const size = cell("num ts-sz", formatSize(t.size));
    if (t.large) {
      const flag = document.createElement("span");
      flag.className = "visually-hidden";
      flag.textContent = " (large)";
      size.append(flag);
    }
    cell("ts-side", t.side === "buy" ? "Buy" : "Sell");
    return { tr, time, ts: t.ts };
  }

  /** Write ``model`` (a TimeSales); ``clock`` is the trader's clock preference. */
  render(model, precision, clock) {
    const clockChanged = clock !== this.clockDrawn;
    if (model.version === this.drawn && !clockChanged) return;
    this.drawn = model.version;
    this.clockDrawn = clock;
    const keep = new Map();
    const rows = model.rows.map((t) => {
      let made = this.made.get(t.key);
      if (!made) made = this.row(t, precision);
      else if (clockChanged) made.time.textContent = formatClock(made.ts, "tick");
      keep.set(t.key, made);
      return made.tr;
    });
    this.made = keep;
    const current = this.tbody.children;
    const same = current.length === rows.length && rows.every((tr, i) => current[i] === tr);
    if (!same) this.tbody.replaceChildren(...rows);
  }

  clear() {
    this.made.clear();
    this.drawn = -1;
    this.tbody.replaceChildren();
  }
}
