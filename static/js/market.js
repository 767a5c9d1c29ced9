// The in-memory market a page shows: the symbol catalog and one quote per subscribed symbol.
//
// Stream frames only update this model and note which symbols changed in `dirty`;
// widgets read it when they render, once per animation frame. Everything here is
// bounded: one quote per symbol and a fixed-length sparkline.

// Sparkline points are 5 s buckets (the dashboard subscribes with interval "5s", so the
// snapshot's candles seed the line at once): 60 points are the last five minutes.
const SPARK_BUCKET_MS = 5000;
export const SPARK_POINTS = 60;

export class Market {
  constructor(catalog = []) {
    this.catalog = new Map();
    this.quotes = new Map();
    this.dirty = new Set();
    this.setCatalog(catalog);
  }

  /** Replace the catalog (from `hello` or `symbols`); returns what changed. */
  setCatalog(entries) {
    const before = this.catalog;
    this.catalog = new Map(entries.map((entry) => [entry.symbol, { ...entry }]));
    const added = [];
    const changed = [];
    for (const [symbol, entry] of this.catalog) {
      const old = before.get(symbol);
      if (!old) added.push(symbol);
      else if (old.status !== entry.status || old.precision !== entry.precision || old.name !== entry.name) {
        changed.push(symbol);
      }
    }
    const removed = [...before.keys()].filter((symbol) => !this.catalog.has(symbol));
    for (const symbol of [...added, ...changed, ...removed]) this.dirty.add(symbol);
    return { added, removed, changed };
  }

  entry(symbol) {
    return this.catalog.get(symbol);
  }

  precision(symbol) {
    return this.catalog.get(symbol)?.precision ?? 2;
  }

  status(symbol) {
    return this.catalog.get(symbol)?.status ?? "disabled";
  }

  quote(symbol) {
    return this.quotes.get(symbol);
  }

  snapshot(msg) {
    const entry = this.catalog.get(msg.symbol);
    if (entry && msg.status) entry.status = msg.status;
    this.dirty.add(msg.symbol);
    if (!msg.quote) {
      // The symbol has not ticked yet: its first tick opens the quote.
      this.quotes.delete(msg.symbol);
      return;
    }
    const q = { ...msg.quote, lastTickAt: performance.now(), lastMove: 0, moves: 0, spark: [], sparkBucket: 0 };
    const candles = msg.interval === "5s" && Array.isArray(msg.candles) ? msg.candles.slice(-SPARK_POINTS) : [];
    if (candles.length) {
      q.spark = candles.map((c) => c.close);
      q.sparkBucket = candles[candles.length - 1].ts;
      q.spark[q.spark.length - 1] = q.price;
    } else {
      q.spark = [q.price];
      q.sparkBucket = q.ts - (q.ts % SPARK_BUCKET_MS);
    }
    this.quotes.set(msg.symbol, q);
  }

  ticks(ticks) {
    const now = performance.now();
    for (const t of ticks) {
      let q = this.quotes.get(t.symbol);
      if (!q) {
        q = {
          price: t.price, open: t.price, high: t.price, low: t.price, volume: 0, change: 0, change_pct: 0,
          lastMove: 0, moves: 0, spark: [], sparkBucket: 0,
        };
        this.quotes.set(t.symbol, q);
      }
      const move = Math.sign(t.price - q.price);
      if (move) {
        q.lastMove = move;
        q.moves += 1;
      }
      q.price = t.price;
      q.bid = t.bid;
      q.ask = t.ask;
      q.ts = t.ts;
      q.high = Math.max(q.high ?? t.price, t.price);
      q.low = Math.min(q.low ?? t.price, t.price);
      q.volume = (q.volume || 0) + t.volume;
      q.change = t.price - q.open;
      q.change_pct = q.open ? (t.price / q.open - 1) * 100 : 0;
      q.lastTickAt = now;
      const bucket = t.ts - (t.ts % SPARK_BUCKET_MS);
      if (bucket === q.sparkBucket && q.spark.length) {
        q.spark[q.spark.length - 1] = t.price;
      } else if (bucket > q.sparkBucket) {
        q.spark.push(t.price);
        q.sparkBucket = bucket;
        if (q.spark.length > SPARK_POINTS) q.spark.splice(0, q.spark.length - SPARK_POINTS);
      }
      this.dirty.add(t.symbol);
    }
  }

  /** A symbol left the page: drop its quote so nothing grows with what was once shown. */
  forget(symbol) {
    this.quotes.delete(symbol);
    this.dirty.delete(symbol);
  }

  takeDirty() {
    const dirty = this.dirty;
    this.dirty = new Set();
    return dirty;
  }
}
