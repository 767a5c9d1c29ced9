// The order book section of a page (templates/dashboard/_book.html): the ladder, the
// cumulative depth chart and the time & sales tape of one symbol, fed by the page's
// StreamClient (its "depth" and "trades" channels) and by the recent trades endpoint.
//
// show(symbol) subscribes that symbol's book (and unsubscribes the one shown before);
// hide() unsubscribes it. The page routes the stream's depth_snapshot / depth / trades
// frames here; they only update the models (order_book.js, time_sales.js), and one
// animation-frame job writes all three widgets.

import { DepthChart } from "./depth_chart.js";
import { requestWrite } from "./frame.js";
import { LadderView, OrderBook } from "./order_book.js";
import { prefs } from "./prefs.js";
import { TimeSales, TimeSalesView } from "./time_sales.js";

const DEPTH_LEVELS = 20;
const TAPE_ROWS = 50;
const FILL_RETRY_MS = 2000;
const FILL_RETRIES = 5;
// A hole between the history and the live trades: the history is asked again, this often at most.
const REFILL_MS = 1000;
const REFILLS = 5;

export class BookPanel {
  /**
   * @param {HTMLElement} root the `.book` section (data-rows: ladder levels shown per side)
   * @param {import("./protocol.js").StreamClient} client the page's stream
   */
  constructor(root, client, { levels = DEPTH_LEVELS } = {}) {
    this.root = root;
    this.client = client;
    this.levels = levels;
    this.rows = Number(root.dataset.rows) || 10;
    this.book = new OrderBook(null, levels);
    this.trades = new TimeSales({ max: TAPE_ROWS });
    this.ladder = new LadderView(root, this.rows);
    this.depth = new DepthChart(root.querySelector(".depth"), levels);
    this.tape = new TimeSalesView(root.querySelector(".time-sales tbody"));
    this.symbolEls = root.querySelectorAll("[data-book-symbol]");
    this.symbol = null;
    this.precision = 2;
    this.token = 0; // the current show(): answers for an older one are dropped
    this.drawn = { book: -1, symbol: null };
    this.stats = { resyncs: 0, fills: 0, refills: 0 };
    this.refill = null; // {timer, count} of the current show()
    this.hellos = client.helloSeen ? 1 : 0; // the first hello is no reconnect: show() filled the tape
    this.write = () => this.render();
    window.addEventListener("ticker:prefs", () => requestWrite(this.write)); // the tape's clock
  }

  /** Show ``symbol``'s book: subscribe its depth and trades, fill the tape from history. */
  show(symbol, precision) {
    this.precision = precision;
    if (symbol === this.symbol) return;
    if (this.symbol) this.client.unsubscribeBook(this.symbol);
    this.symbol = symbol;
    this.token += 1;
    this.book.reset(symbol, this.levels);
    this.trades.reset(symbol);
    this.resetRefill();
    this.client.subscribeBook(symbol, this.levels);
    this.fillTape();
    requestWrite(this.write);
  }

  /** Stop showing a book: its channels are unsubscribed, the widgets emptied. */
  hide() {
    if (this.symbol) this.client.unsubscribeBook(this.symbol);
    this.symbol = null;
    this.token += 1;
    this.book.reset(null, this.levels);
    this.trades.reset(null);
    this.resetRefill();
    requestWrite(this.write);
  }

  resetRefill() {
    clearTimeout(this.refill?.timer);
    this.refill = { timer: 0, count: 0 };
  }

  /** Trades missing between two rows (history and live did not meet): ask the history again. */
  checkHoles() {
    const refill = this.refill;
    if (refill.timer || refill.count >= REFILLS || !this.trades.hasHole()) return;
    const token = this.token;
    refill.timer = setTimeout(() => {
      refill.timer = 0;
      if (token !== this.token) return;
      refill.count += 1;
      this.stats.refills += 1;
      this.fillTape();
    }, REFILL_MS);
  }

  /** A new connection (hello): its book comes as a fresh snapshot; trades missed meanwhile from history. */
  reconnected() {
    this.hellos += 1;
    if (!this.symbol || this.hellos === 1) return;
    this.book.u = null;
    this.resetRefill();
    this.fillTape();
    requestWrite(this.write);
  }

  depthSnapshot(msg) {
    if (this.book.applySnapshot(msg) === "ok") requestWrite(this.write);
  }

  depthDiff(msg) {
    const result = this.book.applyDiff(msg);
    if (result === "ok") {
      requestWrite(this.write);
    } else if (result === "gap") {
      // Another U or epoch than the book continues: ask for a fresh snapshot.
      this.stats.resyncs += 1;
      this.client.resyncDepth(this.symbol);
      requestWrite(this.write);
    }
  }

  tradesIn(trades) {
    if (!this.trades.add(trades)) return;
    this.checkHoles();
    requestWrite(this.write);
  }

  async fillTape(attempt = 0) {
    const token = this.token;
    const symbol = this.symbol;
    let data;
    try {
      const url = `/api/symbols/${encodeURIComponent(symbol)}/trades/?limit=${TAPE_ROWS}`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.status >= 400 && response.status < 500) {
        console.warn(`recent trades of ${symbol}: HTTP ${response.status}`);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (err) {
      // The server may be restarting: the stream reconnects by itself, the history is asked again.
      if (token === this.token && attempt < FILL_RETRIES) {
        setTimeout(() => token === this.token && this.fillTape(attempt + 1), FILL_RETRY_MS);
      }
      console.warn(`recent trades of ${symbol} failed (${err.message})`);
      return;
    }
    if (token !== this.token) return; // another symbol was chosen meanwhile
    const trades = Array.isArray(data) ? data : (data.trades ?? data.data ?? []);
    this.stats.fills += 1;
    this.trades.fill(trades);
    this.checkHoles();
    requestWrite(this.write);
  }

  state() {
    if (!this.symbol) return "idle";
    if (this.book.ready) return "live";
    return this.book.stats.snapshots ? "resync" : "loading";
  }

  render() {
    const root = this.root;
    const state = this.state();
    if (root.dataset.state !== state) root.dataset.state = state;
    const symbol = this.symbol ?? "";
    if (root.dataset.symbol !== symbol) root.dataset.symbol = symbol;
    for (const el of this.symbolEls) if (el.textContent !== symbol) el.textContent = symbol;
    if (this.drawn.book !== this.book.version || this.drawn.symbol !== this.symbol) {
      this.drawn = { book: this.book.version, symbol: this.symbol };
      this.ladder.render(this.book, this.precision);
      this.depth.book = this.book;
      this.depth.symbol = symbol;
      this.depth.precision = this.precision;
      this.depth.render(); // in this frame's pass: the chart never lags the ladder
    }
    this.tape.render(this.trades, this.precision, prefs.clock);
  }

  /** What the browser tests read (window.tickerBook.info()). */
  info() {
    return {
      symbol: this.symbol,
      state: this.state(),
      book: this.book.info(),
      trades: this.trades.rows.map((t) => ({ ...t })),
      median: this.trades.median(),
      tradeStats: { ...this.trades.stats },
      depth: { ...this.depth.stats },
      stats: { ...this.stats },
    };
  }
}
