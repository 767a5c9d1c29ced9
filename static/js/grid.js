// The watchlist grid: one row per shown symbol, sortable by column, keyboard navigable.
//
// Rows are created when a symbol enters the view and removed when it leaves. Cells are
// written only from render(), once per animation frame, for the symbols that changed,
// and a cell is touched only when its text differs: 50 symbols at 10 frames a second
// cost one small DOM pass per frame. Column widths are fixed (colgroup + fixed table
// layout) and figures tabular, so updates never move the layout.

import { formatPct, formatPrice, formatSigned, formatVolume } from "./format.js";

const FLASH_MS = 250;
// A trading symbol ticks at least twice a second: five silent seconds mean its price is not live.
const STALE_MS = 5000;
// A sort on a live column is re-applied at most this often, so rows do not jitter every frame.
const RESORT_MS = 1000;
const SPARK_W = 72;
const SPARK_H = 22;
const UP = "#16c784";
const DOWN = "#ea3943";

const CELLS = ["last", "change", "change-pct", "bid", "ask", "volume"];

// Sort keys: how to read a comparable value for a symbol (null sorts last).
const SORT_VALUES = {
  symbol: (symbol) => symbol,
  name: (symbol, market) => market.entry(symbol)?.name ?? "",
  last: (symbol, market) => market.quote(symbol)?.price ?? null,
  change: (symbol, market) => market.quote(symbol)?.change ?? null,
  change_pct: (symbol, market) => market.quote(symbol)?.change_pct ?? null,
  bid: (symbol, market) => market.quote(symbol)?.bid ?? null,
  ask: (symbol, market) => market.quote(symbol)?.ask ?? null,
  volume: (symbol, market) => market.quote(symbol)?.volume ?? null,
};
const TEXT_SORTS = new Set(["symbol", "name"]);

function td(className) {
  const cell = document.createElement("td");
  cell.className = className;
  return cell;
}

class Row {
  constructor(symbol) {
    this.symbol = symbol;
    const tr = document.createElement("tr");
    tr.id = `row-${symbol}`;
    tr.dataset.symbol = symbol;
    tr.setAttribute("aria-selected", "false");
    const sym = td("sym");
    const code = document.createElement("span");
    code.className = "code";
    code.textContent = symbol;
    const flag = document.createElement("span");
    flag.className = "flag";
    flag.textContent = "HALTED";
    sym.append(code, flag);
    this.nameCell = td("name");
    tr.append(sym, this.nameCell);
    this.cells = {};
    for (const name of CELLS) {
      const cell = td(`num ${name}`);
      cell.textContent = "—";
      this.cells[name] = cell;
      tr.append(cell);
    }
    const spark = td("spark");
    this.canvas = document.createElement("canvas");
    this.dpr = Math.min(window.devicePixelRatio || 1, 2);
    this.canvas.width = SPARK_W * this.dpr;
    this.canvas.height = SPARK_H * this.dpr;
    spark.append(this.canvas);
    tr.append(spark);
    this.tr = tr;
    this.text = {};
    this.attrs = {};
    this.moves = null;
    this.sparkKey = "";
    this.flashUntil = 0;
    this.lastTickAt = 0;
  }

  setText(name, text) {
    if (this.text[name] !== text) {
      this.cells[name].textContent = text;
      this.text[name] = text;
    }
  }

  setAttr(name, value) {
    if (this.attrs[name] === value) return;
    this.attrs[name] = value;
    if (value === undefined) delete this.tr.dataset[name];
    else this.tr.dataset[name] = value;
  }

  render(market, now) {
    const entry = market.entry(this.symbol);
    const status = entry ? entry.status : "disabled";
    this.setAttr("status", status);
    if (entry && this.nameCell.textContent !== entry.name) {
      this.nameCell.textContent = entry.name;
      this.nameCell.title = entry.name;
    }
    const q = market.quote(this.symbol);
    if (!q) return;
    const p = market.precision(this.symbol);
    this.lastTickAt = q.lastTickAt || 0;
    this.setText("last", formatPrice(q.price, p));
    this.setText("change", formatSigned(q.change, p));
    this.setText("change-pct", formatPct(q.change_pct));
    this.setText("bid", formatPrice(q.bid, p));
    this.setText("ask", formatPrice(q.ask, p));
    this.setText("volume", formatVolume(q.volume));
    this.setAttr("trend", q.change > 0 ? "up" : q.change < 0 ? "down" : "flat");
    // Flash on a price move since the last render; never on the first one (a snapshot).
    if (this.moves !== null && q.moves !== this.moves && q.lastMove && status !== "halted") {
      this.setAttr("flash", q.lastMove > 0 ? "up" : "down");
      this.flashUntil = now + FLASH_MS;
    }
    this.moves = q.moves;
    const key = `${q.spark.length}:${q.spark[q.spark.length - 1]}:${q.change >= 0}`;
    if (key !== this.sparkKey) {
      this.sparkKey = key;
      this.drawSpark(q);
    }
  }

  /** Flash and staleness depend on time, not only on ticks. Returns true while flashing. */
  age(now, stale) {
    if (this.flashUntil && now >= this.flashUntil) {
      this.setAttr("flash", undefined);
      this.flashUntil = 0;
    }
    this.setAttr("stale", stale ? "true" : undefined);
    return this.flashUntil > 0;
  }

  drawSpark(q) {
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, SPARK_W, SPARK_H);
    const points = q.spark;
    if (points.length < 2) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      if (p < lo) lo = p;
      if (p > hi) hi = p;
    }
    const span = hi - lo || 1;
    // Newest point at the right edge; until the line holds SPARK_POINTS buckets (a fresh
    // market) the history there is stretched over the whole width.
    const step = SPARK_W / (Math.max(points.length, 8) - 1);
    const x0 = SPARK_W - (points.length - 1) * step;
    const y = (p) => SPARK_H - 2 - ((p - lo) / span) * (SPARK_H - 4);
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x0 + i * step, y(p)) : ctx.moveTo(x0, y(p))));
    const color = q.change >= 0 ? UP : DOWN;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.25;
    ctx.stroke();
    ctx.lineTo(SPARK_W, SPARK_H);
    ctx.lineTo(x0, SPARK_H);
    ctx.closePath();
    ctx.globalAlpha = 0.12;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
  }
}

export class Grid {
  /**
   * @param {HTMLTableElement} table
   * @param {import("./market.js").Market} market
   * @param {object} hooks onOpen(symbol), onSelect(symbol), onMove(symbol, delta), requestRender()
   */
  constructor(table, market, hooks) {
    this.table = table;
    this.tbody = table.tBodies[0];
    this.market = market;
    this.hooks = hooks;
    this.rows = new Map();
    this.listOrder = [];
    this.shown = [];
    this.sort = null; // {key, dir: 1 | -1}
    this.sortedAt = 0;
    this.orderDirty = true;
    this.selected = null;
    this.charted = null;
    this.scrollToSelected = false;
    this.connectionLive = false;
    this.empty = document.createElement("tr");
    this.empty.className = "empty";
    this.empty.innerHTML = '<td colspan="9">This watchlist is empty: add a symbol with the picker above.</td>';
    table.addEventListener("keydown", (event) => this.onKey(event));
    this.tbody.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-symbol]");
      if (!tr) return;
      this.select(tr.dataset.symbol);
      this.hooks.onOpen(tr.dataset.symbol);
    });
    for (const button of table.querySelectorAll("thead button[data-sort]")) {
      button.addEventListener("click", () => this.toggleSort(button.dataset.sort));
    }
    // Flashes fade and silent symbols turn stale with time, even when no tick arrives.
    setInterval(() => this.hooks.requestRender(), 1000);
  }

  /** Show these symbols, in this (watchlist) order; rows of the others go away. */
  setSymbols(symbols) {
    const wanted = new Set(symbols);
    for (const [symbol, row] of this.rows) {
      if (!wanted.has(symbol)) {
        row.tr.remove();
        this.rows.delete(symbol);
      }
    }
    for (const symbol of symbols) {
      if (!this.rows.has(symbol)) this.rows.set(symbol, new Row(symbol));
    }
    this.listOrder = [...symbols];
    this.orderDirty = true;
    if (!this.selected || !wanted.has(this.selected)) this.selected = symbols[0] ?? null;
    this.hooks.onSelect(this.selected);
    this.hooks.requestRender();
  }

  symbols() {
    return [...this.listOrder];
  }

  displayed() {
    return this.shown;
  }

  setConnectionLive(live) {
    this.connectionLive = live;
  }

  toggleSort(key) {
    const first = TEXT_SORTS.has(key) ? 1 : -1;
    if (!this.sort || this.sort.key !== key) this.sort = { key, dir: first };
    else if (this.sort.dir === first) this.sort = { key, dir: -first };
    else this.sort = null; // third click: back to the watchlist's own order
    this.sortChanged();
  }

  /** Back to the watchlist's own order (reordering only makes sense there). */
  clearSort() {
    if (!this.sort) return;
    this.sort = null;
    this.sortChanged();
  }

  sortChanged() {
    for (const th of this.table.querySelectorAll("thead th")) {
      const button = th.querySelector("button[data-sort]");
      if (!button) continue;
      const active = this.sort && button.dataset.sort === this.sort.key;
      th.setAttribute("aria-sort", active ? (this.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
    this.orderDirty = true;
    this.hooks.requestRender();
  }

  computeOrder() {
    if (!this.sort) return this.listOrder;
    const value = SORT_VALUES[this.sort.key];
    const dir = this.sort.dir;
    return [...this.listOrder].sort((a, b) => {
      const va = value(a, this.market);
      const vb = value(b, this.market);
      if (va === null || vb === null) return va === null ? (vb === null ? 0 : 1) : -1;
      if (typeof va === "string") return dir * va.localeCompare(vb);
      return dir * (va - vb);
    });
  }

  select(symbol, { scroll = false } = {}) {
    if (!this.rows.has(symbol)) return;
    this.selected = symbol;
    this.scrollToSelected = scroll;
    this.hooks.onSelect(symbol);
    this.hooks.requestRender();
  }

  setCharted(symbol) {
    this.charted = symbol;
    this.hooks.requestRender();
  }

  onKey(event) {
    const order = this.shown;
    if (!order.length) return;
    const at = Math.max(0, order.indexOf(this.selected));
    const jumps = { ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
    if (event.key in jumps && event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      if (this.selected) this.hooks.onMove(this.selected, jumps[event.key]);
    } else if (event.key in jumps) {
      const next = Math.min(order.length - 1, Math.max(0, at + jumps[event.key]));
      this.select(order[next], { scroll: true });
    } else if (event.key === "Home" || event.key === "End") {
      this.select(order[event.key === "Home" ? 0 : order.length - 1], { scroll: true });
    } else if (event.key === "Enter") {
      if (this.selected) this.hooks.onOpen(this.selected);
    } else {
      return;
    }
    event.preventDefault();
  }

  /** The frame's DOM pass: changed rows, order, selection, flashes and staleness. */
  render(dirty, now) {
    for (const symbol of dirty) {
      const row = this.rows.get(symbol);
      if (row) row.render(this.market, now);
    }
    const liveSort = this.sort && !TEXT_SORTS.has(this.sort.key);
    if (this.orderDirty || (liveSort && dirty.size && now - this.sortedAt >= RESORT_MS)) {
      this.applyOrder(now);
    }
    const clock = performance.now();
    let flashing = false;
    for (const row of this.rows.values()) {
      const silent = row.lastTickAt && clock - row.lastTickAt > STALE_MS;
      const stale = this.connectionLive && silent && row.attrs.status === "trading";
      if (row.age(now, stale)) flashing = true;
      const selected = row.symbol === this.selected ? "true" : "false";
      if (row.attrs.selected !== selected) {
        row.attrs.selected = selected;
        row.tr.setAttribute("aria-selected", selected);
      }
      row.setAttr("charted", row.symbol === this.charted ? "true" : undefined);
    }
    if (this.selected) this.table.setAttribute("aria-activedescendant", `row-${this.selected}`);
    if (this.scrollToSelected && this.selected) {
      this.rows.get(this.selected)?.tr.scrollIntoView({ block: "nearest" });
      this.scrollToSelected = false;
    }
    if (flashing && !this.fadeTimer) {
      // Come back when the flash is due to fade, even if the symbol stops ticking.
      this.fadeTimer = setTimeout(() => {
        this.fadeTimer = 0;
        this.hooks.requestRender();
      }, FLASH_MS);
    }
  }

  applyOrder(now) {
    const order = this.computeOrder();
    this.sortedAt = now;
    this.orderDirty = false;
    const same = order.length === this.shown.length && order.every((s, i) => s === this.shown[i]);
    if (same && this.tbody.childElementCount === Math.max(order.length, 1)) return;
    this.shown = order;
    if (!order.length) {
      this.tbody.replaceChildren(this.empty);
      return;
    }
    // append() moves existing rows: nodes keep their state, nothing is rebuilt.
    this.tbody.replaceChildren(...order.map((symbol) => this.rows.get(symbol).tr));
    for (const symbol of order) {
      const row = this.rows.get(symbol);
      if (row.moves === null) row.render(this.market, now);
    }
  }
}
