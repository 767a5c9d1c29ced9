// The watchlist grid: one row per symbol, updated at most once per animation frame.
//
// Ticks only update an in-memory model; a single requestAnimationFrame pass writes the
// rows that changed, so 50 symbols at 10 frames a second cost one DOM pass per frame.

import { formatPrice, formatSigned, formatVolume } from "./format.js";

const SPARK_POINTS = 60;
const FLASH_MS = 400;

class Row {
  constructor(tr) {
    this.tr = tr;
    this.symbol = tr.dataset.symbol;
    this.precision = Number(tr.dataset.precision);
    this.cells = {};
    for (const name of ["last", "change", "change-pct", "bid", "ask", "volume"]) {
      this.cells[name] = tr.querySelector(`.${name}`);
    }
    this.canvas = tr.querySelector("canvas");
    this.quote = null; // {price, bid, ask, volume, open, change, change_pct}
    this.spark = [];
    this.direction = 0;
    this.dirty = false;
  }

  applySnapshot(snapshot) {
    this.precision = snapshot.precision ?? this.precision;
    if (snapshot.quote) {
      this.quote = { ...snapshot.quote };
      this.spark = [snapshot.quote.price];
    }
    this.setStatus(snapshot.status);
    this.dirty = true;
  }

  applyTick(tick) {
    const q = this.quote || { open: tick.price, volume: 0 };
    this.direction = q.price === undefined ? 0 : Math.sign(tick.price - q.price);
    q.price = tick.price;
    q.bid = tick.bid;
    q.ask = tick.ask;
    q.volume = (q.volume || 0) + tick.volume;
    q.change = tick.price - q.open;
    q.change_pct = q.open ? (tick.price / q.open - 1) * 100 : 0;
    this.quote = q;
    this.spark.push(tick.price);
    if (this.spark.length > SPARK_POINTS) this.spark.splice(0, this.spark.length - SPARK_POINTS);
    this.dirty = true;
  }

  setStatus(status) {
    if (status) this.tr.dataset.status = status;
  }

  render(now) {
    const q = this.quote;
    if (!q) return;
    this.cells.last.textContent = formatPrice(q.price, this.precision);
    this.cells.change.textContent = formatSigned(q.change, this.precision);
    this.cells["change-pct"].textContent = `${formatSigned(q.change_pct, 2)}%`;
    this.cells.bid.textContent = formatPrice(q.bid, this.precision);
    this.cells.ask.textContent = formatPrice(q.ask, this.precision);
    this.cells.volume.textContent = formatVolume(q.volume);
    this.tr.dataset.trend = q.change > 0 ? "up" : q.change < 0 ? "down" : "flat";
    if (this.direction) {
      this.tr.dataset.flash = this.direction > 0 ? "up" : "down";
      this.flashUntil = now + FLASH_MS;
    }
    this.drawSpark();
    this.dirty = false;
  }

  clearFlash(now) {
    if (this.flashUntil && now > this.flashUntil) {
      delete this.tr.dataset.flash;
      this.flashUntil = 0;
    }
  }

  drawSpark() {
    const c = this.canvas;
    if (!c || this.spark.length < 2) return;
    const ctx = c.getContext("2d");
    const { width, height } = c;
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of this.spark) {
      lo = Math.min(lo, p);
      hi = Math.max(hi, p);
    }
    const span = hi - lo || 1;
    ctx.clearRect(0, 0, width, height);
    ctx.beginPath();
    this.spark.forEach((p, i) => {
      const x = (i / (SPARK_POINTS - 1)) * width;
      const y = height - 2 - ((p - lo) / span) * (height - 4);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = this.quote.change >= 0 ? "#26a69a" : "#ef5350";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
}

export class Grid {
  constructor(table) {
    this.table = table;
    this.rows = new Map();
    for (const tr of table.querySelectorAll("tbody tr[data-symbol]")) {
      this.rows.set(tr.dataset.symbol, new Row(tr));
    }
    this.scheduled = false;
  }

  symbols() {
    return [...this.rows.keys()];
  }

  snapshot(msg) {
    const row = this.rows.get(msg.symbol);
    if (row) {
      row.applySnapshot(msg);
      this.schedule();
    }
  }

  ticks(ticks) {
    for (const tick of ticks) {
      const row = this.rows.get(tick.symbol);
      if (row) row.applyTick(tick);
    }
    this.schedule();
  }

  catalog(symbols) {
    for (const entry of symbols) {
      const row = this.rows.get(entry.symbol);
      if (row) row.setStatus(entry.status);
    }
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame((now) => {
      this.scheduled = false;
      for (const row of this.rows.values()) {
        if (row.dirty) row.render(now);
        else row.clearFlash(now);
      }
    });
  }
}
