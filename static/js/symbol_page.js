// The symbol page: chart, quote, session stats, recent ticks and order book (ladder, depth,
// time & sales) of one symbol, fed by the single-symbol stream /ws/symbols/<SYMBOL>/ (the
// sync consumer), shareable by URL. The stream subscribes the ticks by itself; the book's
// channels are asked for after every hello (StreamClient.subscribeBook).

import { Alerts } from "./alerts.js";
import { BookPanel } from "./book_panel.js";
import { bindIntervals, CandleChart, readIntervals } from "./chart.js";
import { bindIndicator } from "./connection.js";
import { formatPct, formatPrice, formatSigned, formatTime, formatVolume } from "./format.js";
import { requestWrite } from "./frame.js";
import { Market } from "./market.js";
import { bindGlobalControls } from "./prefs.js";
import { StreamClient } from "./protocol.js";

const MAX_ROWS = 40;
const $ = (selector) => document.querySelector(selector);
const root = $(".symbol-page");
const symbol = root.dataset.symbol;
const precision = Number(root.dataset.precision);
const market = new Market([{ symbol, precision, name: "", status: root.dataset.status }]);
const tbody = root.querySelector(".ticks tbody");
const statusEl = root.querySelector(".status");
let pending = []; // ticks not yet written to the table (at most MAX_ROWS kept)
let count = 0;
let lastPrice = null;
let snapshotSeen = false;

const stored = localStorage.getItem("ticker.interval");
const intervals = readIntervals($(".intervals"));
let interval = stored in intervals ? stored : "1m";
const chart = new CandleChart($("#chart"), $(".readout"), intervals);
bindIntervals($(".intervals"), interval, (next) => {
  interval = next;
  localStorage.setItem("ticker.interval", next);
  chart.show(symbol, interval, precision);
});
chart.show(symbol, interval, precision);

function set(selector, text) {
  for (const el of root.querySelectorAll(selector)) if (el.textContent !== text) el.textContent = text;
}

function tickRow(t) {
  const tr = document.createElement("tr");
  const direction = lastPrice === null ? "" : t.price > lastPrice ? "up" : t.price < lastPrice ? "down" : "";
  lastPrice = t.price;
  const cells = [
    [formatTime(t.ts), "time"],
    [String(t.seq), "num"],
    [formatPrice(t.price, precision), `num px ${direction}`],
    [formatPrice(t.bid, precision), "num"],
    [formatPrice(t.ask, precision), "num"],
    [formatVolume(t.volume), "num"],
  ];
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    td.className = cls;
    tr.append(td);
  }
  return tr;
}

function renderFrame() {
  market.takeDirty();
  const status = market.status(symbol);
  if (root.dataset.status !== status) {
    root.dataset.status = status;
    statusEl.dataset.status = status;
    statusEl.textContent = status;
  }
  const q = market.quote(symbol);
  if (q) {
    set(".last", formatPrice(q.price, precision));
    set(".px .change", `${formatSigned(q.change, precision)} ${formatPct(q.change_pct)}`);
    set(".quote .change", formatSigned(q.change, precision));
    set(".change-pct", formatPct(q.change_pct));
    set(".bid", formatPrice(q.bid, precision));
    set(".ask", formatPrice(q.ask, precision));
    set(".spread", formatPrice(q.ask - q.bid, precision));
    set(".open", formatPrice(q.open, precision));
    set(".high", formatPrice(q.high, precision));
    set(".low", formatPrice(q.low, precision));
    set(".range", formatPrice(q.high - q.low, precision));
    set(".volume", formatVolume(q.volume));
    set(".count", String(count));
    const trend = q.change > 0 ? "up" : q.change < 0 ? "down" : "flat";
    if (root.dataset.trend !== trend) root.dataset.trend = trend;
  }
  if (pending.length) {
    const rows = pending.map(tickRow).reverse();
    pending = [];
    tbody.prepend(...rows);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  }
}
const requestRender = () => requestWrite(renderFrame);

const client = new StreamClient(
  `/ws/symbols/${encodeURIComponent(symbol)}/`,
  {
    onHello: (msg) => {
      market.setCatalog(msg.symbols);
      book.reconnected();
      requestRender();
    },
    onSymbols: (symbols) => {
      market.setCatalog(symbols);
      requestRender();
    },
    onSnapshot: (msg) => {
      market.snapshot(msg);
      // A second snapshot means ticks were lost in between: the chart reloads history.
      if (snapshotSeen) chart.reload();
      snapshotSeen = true;
      requestRender();
    },
    onTicks: (ticks) => {
      market.ticks(ticks);
      chart.ticks(ticks);
      count += ticks.length;
      pending.push(...ticks);
      if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
      requestRender();
    },
    onDepthSnapshot: (msg) => book.depthSnapshot(msg),
    onDepth: (msg) => book.depthDiff(msg),
    onTrades: (trades) => book.tradesIn(trades),
    onState: () => renderIndicator(),
    onError: (err) => console.warn("stream error", err.code, err.message),
    onAlert: (alert) => alerts.fired(alert),
  },
  { symbols: [symbol], autoSubscribed: true },
);
const renderIndicator = bindIndicator($("#connection"), client);
const book = new BookPanel($("#book"), client);
book.show(symbol, precision);

// Price alerts: set for this symbol; any of the trader's alerts that fire toast here too.
const alerts = new Alerts({ market });
$(".sym-head [data-alert]").addEventListener("click", () => alerts.open(symbol));
alerts.showUnseen();
bindGlobalControls();
client.connect();
renderIndicator();

// Exposed for the browser tests and for debugging from the console.
window.tickerStream = client;
window.tickerChart = chart;
window.tickerMarket = market;
window.tickerAlerts = alerts;
window.tickerBook = book;
