// The watchlist grid: one row per shown symbol, sortable by column, keyboard navigable.
//
// Rows are created when a symbol enters the view and removed when it leaves. Cells are
// written only from render(), in the page's animation-frame pass, for rows that changed,
// are on screen, and fit the frame's budget; a cell is touched only when its text
// differs. Column widths are fixed (colgroup + fixed table layout), figures tabular and
// each value box layout-contained, so updates never move the layout.

import { formatPct, formatPrice, formatSigned, formatVolume } from "./format.js";

// The flash fades in steps (strong, then weaker, then gone) written by the frame pass:
// a CSS colour transition would repaint every flashing cell on every frame instead.
const FLASH_STEPS_MS = [150, 300, 450];
// The sparkline is a 5-minute trend: redrawing it on every tick adds paint, not information.
const SPARK_REDRAW_MS = 1000;
// A trading symbol ticks at least twice a second: five silent seconds mean its price is not live.
const STALE_MS = 5000;
// A sort on a live column is re-applied at most this often, so rows do not jitter every frame.
const RESORT_MS = 1000;
// Rows written per animation frame at most; the rest follow in the next frames. With 50
// busy symbols one stream frame then spreads over a few animation frames instead of
// making one long task (text layout of ~350 cells costs tens of ms on a slow machine).
const ROWS_PER_FRAME = 16;
const SPARK_W = 72;
const SPARK_H = 22;

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

const SVG = "http://www.w3.org/2000/svg";

// Each cell's text sits in a .v box with `contain: strict` (fixed size): a price change
// lays out that box only, never the table around it.
function td(className) {
  const cell = document.createElement("td");
  cell.className = className;
  const box = document.createElement("div");
  box.className = "v";
  cell.append(box);
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
    sym.firstChild.append(code, flag);
    const name = td("name");
    this.nameBox = name.firstChild;
    tr.append(sym, name);
    this.cells = {};
    for (const cellName of CELLS) {
      const cell = td(`num ${cellName}`);
      cell.firstChild.textContent = "—";
      this.cells[cellName] = cell.firstChild;
      tr.append(cell);
    }
    // An SVG path, not a canvas: 50 canvases would be 50 composited layers to update.
    const spark = td("spark");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute("width", String(SPARK_W));
    svg.setAttribute("height", String(SPARK_H));
    svg.setAttribute("aria-hidden", "true");
    this.area = document.createElementNS(SVG, "path");
    this.area.setAttribute("class", "area");
    this.line = document.createElementNS(SVG, "path");
    this.line.setAttribute("class", "line");
    svg.append(this.area, this.line);
    spark.firstChild.append(svg);
    this.svg = svg;
    tr.append(spark);
    this.tr = tr;
    this.text = {};
    this.attrs = {};
    this.moves = null;
    this.sparkKey = "";
    this.sparkBucket = 0;
    this.sparkDrawnAt = -Infinity;
    this.flashAt = 0;
    this.flashDir = "";
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
    if (entry && this.nameBox.textContent !== entry.name) {
      this.nameBox.textContent = entry.name;
      this.nameBox.title = entry.name;
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
      this.flashDir = q.lastMove > 0 ? "up" : "down";
      this.flashAt = now;
    }
    this.moves = q.moves;
    const key = `${q.spark.length}:${q.spark[q.spark.length - 1]}:${q.change >= 0}`;
    const newBucket = q.sparkBucket !== this.sparkBucket;
    if (key !== this.sparkKey && (newBucket || now - this.sparkDrawnAt >= SPARK_REDRAW_MS)) {
      this.sparkKey = key;
      this.sparkBucket = q.sparkBucket;
      this.sparkDrawnAt = now;
      this.drawSpark(q);
    }
  }

  /** Flash and staleness depend on time, not only on ticks. Returns true while flashing. */
  age(now, stale) {
    let flash;
    if (this.flashDir) {
      const step = FLASH_STEPS_MS.findIndex((ms) => now - this.flashAt < ms);
      if (step < 0) this.flashDir = "";
      else flash = step === 0 ? this.flashDir : `${this.flashDir}-${step}`;
    }
    this.setAttr("flash", flash);
    this.setAttr("stale", stale ? "true" : undefined);
    return Boolean(this.flashDir);
  }

  drawSpark(q) {
    const points = q.spark;
    if (points.length < 2) {
      this.line.setAttribute("d", "");
      this.area.setAttribute("d", "");
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      if (p < lo) lo = p;
      if (p > hi) hi = p;
    }
    const span = hi - lo || 1;
    // Newest point at the right edge; until the line holds all its buckets (a fresh
    // market) the history there is stretched over the whole width.
    const step = SPARK_W / (Math.max(points.length, 8) - 1);
    const x0 = SPARK_W - (points.length - 1) * step;
    const y = (p) => (SPARK_H - 2 - ((p - lo) / span) * (SPARK_H - 4)).toFixed(1);
    const line = points.map((p, i) => `${i ? "L" : "M"}${(x0 + i * step).toFixed(1)} ${y(p)}`).join("");
    this.line.setAttribute("d", line);
    this.area.setAttribute("d", `${line}L${SPARK_W} ${SPARK_H}L${x0.toFixed(1)} ${SPARK_H}Z`);
    this.svg.dataset.trend = q.change >= 0 ? "up" : "down";
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
    this.pending = new Set(); // symbols whose row shows older figures than the market
    // Rows scrolled out of sight are not written; they catch up when they come into view.
    this.visible = new Set();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const symbol = entry.target.dataset.symbol;
        if (entry.isIntersecting) {
          this.visible.add(symbol);
          this.pending.add(symbol);
        } else {
          this.visible.delete(symbol);
        }
      }
      this.hooks.requestRender();
    });
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
        this.observer.unobserve(row.tr);
        row.tr.remove();
        this.rows.delete(symbol);
        this.visible.delete(symbol);
        this.pending.delete(symbol);
      }
    }
    for (const symbol of symbols) {
      if (!this.rows.has(symbol)) {
        const row = new Row(symbol);
        this.rows.set(symbol, row);
        this.observer.observe(row.tr);
      }
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
    for (const symbol of dirty) if (this.rows.has(symbol)) this.pending.add(symbol);
    let budget = ROWS_PER_FRAME;
    for (const symbol of this.pending) {
      if (budget === 0) break;
      if (!this.visible.has(symbol)) continue;
      this.rows.get(symbol).render(this.market, now);
      this.pending.delete(symbol);
      budget -= 1;
    }
    if (budget === 0) this.hooks.requestRender(); // more visible rows wait: next frame
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
    const active = this.selected ? `row-${this.selected}` : "";
    if (this.table.getAttribute("aria-activedescendant") !== active) {
      this.table.setAttribute("aria-activedescendant", active);
    }
    if (this.scrollToSelected && this.selected) {
      this.rows.get(this.selected)?.tr.scrollIntoView({ block: "nearest" });
      this.scrollToSelected = false;
    }
    if (flashing && !this.fadeTimer) {
      // Come back for the next fade step, even if no tick arrives meanwhile.
      this.fadeTimer = setTimeout(() => {
        this.fadeTimer = 0;
        this.hooks.requestRender();
      }, FLASH_STEPS_MS[0]);
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
      if (this.rows.get(symbol).moves === null) this.pending.add(symbol); // new rows: first fill
    }
    this.hooks.requestRender();
  }
}
