// The dashboard: watchlist grid, movers tape, chart of the selected symbol, one stream.
//
// The stream is subscribed to exactly what the page shows (the active watchlist and the
// charted symbol); whatever leaves the view is unsubscribed and forgotten. Stream
// frames update the Market model; one animation-frame pass renders grid, tape and header.
// The "Order book" toggle shows the charted symbol's book (book_panel.js, loaded on first
// use): its depth and trades are subscribed only while shown, for that one symbol.

import { Alerts } from "./alerts.js";
import { bindIndicator } from "./connection.js";
import { formatPct, formatPrice, formatSigned, formatVolume } from "./format.js";
import { requestWrite } from "./frame.js";
import { Grid } from "./grid.js";
import { Market } from "./market.js";
import { bindGlobalControls } from "./prefs.js";
import { StreamClient } from "./protocol.js";
import { Tape } from "./tape.js";
import { Watchlists } from "./watchlists.js";

const pageData = (id) => JSON.parse(document.getElementById(id).textContent);
const $ = (selector) => document.querySelector(selector);

const market = new Market(pageData("catalog-data"));
// Time to first price, read by the browser tests (performance.now() counts from navigation).
const metrics = { firstPrice: null, firstTick: null };
let tickSeen = false;
let chartSymbol = null;
// The interval buttons carry the server's interval table (names and lengths).
const intervalNames = [...document.querySelectorAll(".intervals button[data-interval]")].map((b) => b.dataset.interval);
let interval = intervalNames.includes(localStorage.getItem("ticker.interval")) ? localStorage.getItem("ticker.interval") : "1m";
let chart = null;
let book = null; // the order book panel (book_panel.js), once the toggle first turned it on
let bookOn = false;
let bookReady = null;
const snapshotted = new Set(); // symbols whose first snapshot (per subscription) has arrived

const header = new (class ChartHeader {
  constructor() {
    this.root = $(".chart-panel");
    this.fields = {};
    for (const el of this.root.querySelectorAll("[data-field]")) this.fields[el.dataset.field] = el;
    this.symbol = null;
  }

  set(name, text) {
    const el = this.fields[name];
    if (el && el.textContent !== text) el.textContent = text;
  }

  clear() {
    this.symbol = null;
    for (const name of Object.keys(this.fields)) if (name !== "popout" && name !== "clock") this.set(name, name === "symbol" ? "—" : "");
    this.root.dataset.status = "disabled";
    this.fields.popout.removeAttribute("href");
  }

  render(dirty) {
    const symbol = chartSymbol;
    if (!symbol || (symbol === this.symbol && !dirty.has(symbol))) return;
    this.symbol = symbol;
    const entry = market.entry(symbol);
    const q = market.quote(symbol);
    const p = market.precision(symbol);
    this.set("symbol", symbol);
    this.set("name", entry ? entry.name : "");
    const status = entry ? entry.status : "disabled";
    if (this.root.dataset.status !== status) this.root.dataset.status = status;
    this.set("status", status);
    this.fields.popout.href = `/symbols/${encodeURIComponent(symbol)}/`;
    if (!q) return;
    this.set("last", formatPrice(q.price, p));
    this.set("change", `${formatSigned(q.change, p)} ${formatPct(q.change_pct)}`);
    this.set("bid", formatPrice(q.bid, p));
    this.set("ask", formatPrice(q.ask, p));
    this.set("spread", formatPrice(q.ask - q.bid, p));
    this.set("open", formatPrice(q.open, p));
    this.set("high", formatPrice(q.high, p));
    this.set("low", formatPrice(q.low, p));
    this.set("range", formatPrice(q.high - q.low, p));
    this.set("volume", formatVolume(q.volume));
    const trend = q.change > 0 ? "up" : q.change < 0 ? "down" : "flat";
    if (this.root.dataset.trend !== trend) this.root.dataset.trend = trend;
  }
})();

function renderFrame(now) {
  const dirty = market.takeDirty();
  grid.render(dirty, now);
  tape.render(dirty, now);
  header.render(dirty);
  if (metrics.firstPrice === null && market.quotes.size) {
    metrics.firstPrice = performance.now();
    performance.mark("ticker:first-price");
  }
  if (metrics.firstTick === null && tickSeen) {
    metrics.firstTick = performance.now();
    performance.mark("ticker:first-live-tick");
  }
}
const requestRender = () => requestWrite(renderFrame);

let watchlists = null; // created below; the grid's hooks only run once it exists
const grid = new Grid($("#grid"), market, {
  onOpen: (symbol) => openChart(symbol, { user: true }),
  onSelect: () => watchlists?.renderTools(),
  onMove: (symbol, delta) => watchlists.move(symbol, delta),
  requestRender,
});

watchlists = new Watchlists($(".watch"), {
  lists: pageData("watchlists-data"),
  market,
  selected: () => grid.selected,
  onChange: () => syncView(),
  beforeMove: () => grid.clearSort(),
});

const tape = new Tape($("#tape"), market, { onPick: (symbol) => openChart(symbol, { user: true }), requestRender });

const client = new StreamClient(
  "/ws/stream/",
  {
    onHello: (msg) => {
      catalogChanged(msg.symbols);
      book?.reconnected();
    },
    onSymbols: (symbols) => catalogChanged(symbols),
    onSnapshot: (msg) => {
      market.snapshot(msg);
      // A later snapshot means the stream could not fill a gap: the chart's live candles
      // may miss ticks, so it reloads its history.
      if (snapshotted.has(msg.symbol) && msg.symbol === chartSymbol && chart) chart.reload();
      snapshotted.add(msg.symbol);
      requestRender();
    },
    onTicks: (ticks) => {
      market.ticks(ticks);
      if (chart) chart.ticks(ticks);
      tickSeen = true;
      requestRender();
    },
    onState: (state) => {
      grid.setConnectionLive(state === "live");
      renderIndicator();
      requestRender();
    },
    onDepthSnapshot: (msg) => book?.depthSnapshot(msg),
    onDepth: (msg) => book?.depthDiff(msg),
    onTrades: (trades) => book?.tradesIn(trades),
    onError: (err) => console.warn("stream error", err.code, err.message),
    onAlert: (alert) => alerts.fired(alert),
  },
  { interval: "5s" }, // snapshots carry 5 s candles: they seed the sparklines
);
const renderIndicator = bindIndicator($("#connection"), client);

// Price alerts: set from the grid's selection or the charted symbol; fired ones toast.
const alerts = new Alerts({ market });
$(".wl-tools [data-alert]").addEventListener("click", () => alerts.open(grid.selected));
$(".chart-head [data-alert]").addEventListener("click", () => alerts.open(chartSymbol));
alerts.showUnseen();

function catalogChanged(symbols) {
  const { added, removed, changed } = market.setCatalog(symbols);
  if (added.length || removed.length || changed.length) watchlists.catalogChanged();
  requestRender();
}

/** Subscribe to exactly what is shown; unsubscribe (and forget) what left the view. */
function syncView() {
  const shown = watchlists.visibleSymbols();
  grid.setSymbols(shown);
  tape.setSymbols(shown);
  if (!chartSymbol || !market.entry(chartSymbol) || (shown.length && !shown.includes(chartSymbol))) {
    const stored = localStorage.getItem("ticker.symbol");
    const next = shown.includes(stored) ? stored : (shown[0] ?? null);
    if (next && next !== chartSymbol) openChart(next, { user: false, sync: false });
    else if (!next && chartSymbol && !market.entry(chartSymbol)) closeChart();
  }
  const wanted = new Set(shown);
  if (chartSymbol && market.entry(chartSymbol)) wanted.add(chartSymbol);
  const gone = [...client.wanted].filter((s) => !wanted.has(s));
  if (gone.length) {
    client.unsubscribe(gone);
    for (const symbol of gone) {
      market.forget(symbol);
      snapshotted.delete(symbol);
    }
  }
  const fresh = [...wanted].filter((s) => !client.wanted.has(s));
  if (fresh.length) client.subscribe(fresh);
  watchlists.renderTools();
}

/** The charted symbol was deleted (or disabled) and nothing else is shown: an empty chart. */
function closeChart() {
  chartSymbol = null;
  book?.hide();
  header.clear();
  chartReady.then((c) => c.clear());
}

function openChart(symbol, { user, sync = true }) {
  if (!market.entry(symbol)) return;
  const changed = symbol !== chartSymbol;
  chartSymbol = symbol;
  if (user) localStorage.setItem("ticker.symbol", symbol);
  grid.setCharted(symbol);
  grid.select(symbol);
  if (sync && changed && !client.wanted.has(symbol)) syncView();
  if (changed) syncBook();
  header.symbol = null; // re-render the header for the new symbol
  requestRender();
  chartReady.then((c) => c.show(symbol, interval, market.precision(symbol)));
  if (user && window.matchMedia("(max-width: 1100px)").matches) {
    $(".chart-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }
}

// The chart library loads after the grid is live: it never delays the first price.
const chartReady = import("./chart.js").then(({ CandleChart, bindIntervals, readIntervals }) => {
  chart = new CandleChart($("#chart"), $(".readout"), readIntervals($(".intervals")));
  bindIntervals($(".intervals"), interval, (next) => {
    interval = next;
    localStorage.setItem("ticker.interval", next);
    if (chartSymbol) chart.show(chartSymbol, interval, market.precision(chartSymbol));
  });
  window.tickerChart = chart;
  return chart;
});

// The order book of the charted symbol, behind the chart panel's toggle (remembered).
const bookToggle = $(".chart-tools [data-action=book]");

function syncBook() {
  if (!book) return;
  if (bookOn && chartSymbol) book.show(chartSymbol, market.precision(chartSymbol));
  else book.hide();
}

function writeBookToggle() {
  bookToggle.setAttribute("aria-pressed", String(bookOn));
  $("#book").hidden = !bookOn;
  $(".chart-panel").dataset.book = bookOn ? "on" : "off";
}

function setBook(on, { user }) {
  bookOn = on;
  if (user) localStorage.setItem("ticker.book", on ? "on" : "off");
  requestWrite(writeBookToggle);
  if (!on) {
    syncBook();
    return;
  }
  bookReady ??= import("./book_panel.js").then(({ BookPanel }) => {
    book = new BookPanel($("#book"), client);
    window.tickerBook = book;
    return book;
  });
  bookReady.then(() => syncBook());
}
bookToggle.addEventListener("click", () => setBook(!bookOn, { user: true }));

bindGlobalControls();
syncView();
if (localStorage.getItem("ticker.book") === "on") setBook(true, { user: false });
client.connect();
renderIndicator();

// Exposed for the browser tests and for debugging from the console.
window.tickerStream = client;
window.tickerMarket = market;
window.tickerGrid = grid;
window.tickerWatchlists = watchlists;
window.tickerMetrics = metrics;
window.tickerAlerts = alerts;
