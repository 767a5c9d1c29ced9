// The candlestick chart (TradingView lightweight-charts, vendored): history, then live.
//
// show() loads history from /api/symbols/<SYM>/candles/ and from then on the page feeds
// ticks(): they are aggregated here into the forming candle (same buckets as the server:
// start = ts - ts % interval) and drawn at most once per animation frame. Ticks that
// arrive while history loads are replayed onto it; because history carries no sequence
// numbers, the one candle that was forming at load time may count a few ticks' volume
// twice, so when it closes it is replaced by the server's closed candle.
// Memory stays bounded: past MAX_CANDLES the oldest are dropped.

import {
  CandlestickSeries,
  CrosshairMode,
  HistogramSeries,
  LineStyle,
  createChart,
} from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { clockName, formatClock, formatPct, formatPrice, formatSigned, formatVolume } from "./format.js";
import { requestWrite } from "./frame.js";
import { trendColours } from "./prefs.js";

/**
 * The candle intervals the server rendered into the page's interval buttons
 * (``data-interval`` and ``data-ms``): defined once, in Python, never repeated here.
 */
export function readIntervals(root) {
  return Object.fromEntries(
    [...root.querySelectorAll("button[data-interval]")].map((b) => [b.dataset.interval, Number(b.dataset.ms)]),
  );
}

// A day of 1-minute candles fills the chart on first load (the server generates that much
// history for a new market); past MAX_CANDLES live ones the oldest are dropped.
const HISTORY_LIMIT = 1000;
const MAX_CANDLES = 2000;
const RETRY_MS = 2000;
// A brand-new symbol's history is generated in the background: ask again until it is there.
const BUILDING_RETRIES = 30;

// Tick mark kinds of lightweight-charts (TickMarkType) to the clock's formats.
const TICK_FORMATS = ["year", "month", "day", "minutes", "seconds"];

function bar(c) {
  return { time: c.time, open: c.open, high: c.high, low: c.low, close: c.close };
}

function withAlpha(hex, alpha) {
  const n = Number.parseInt(hex.replace("#", ""), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

function fromWire(c) {
  return { time: c.ts / 1000, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, closed: c.closed };
}

export class CandleChart {
  /**
   * @param {HTMLElement} container where the chart draws; gets data-state/-symbol/-interval
   * @param {HTMLElement} readout the OHLC line under the crosshair (or of the last candle)
   */
  constructor(container, readout, intervals) {
    this.intervals = intervals;
    this.container = container;
    this.colours = trendColours();
    this.volumeColours = { up: withAlpha(this.colours.up, 0.35), down: withAlpha(this.colours.down, 0.35) };
    this.readout = readout;
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { color: "transparent" },
        textColor: "#8a94a6",
        fontSize: 11,
        fontFamily: '"DejaVu Sans Mono", "SFMono-Regular", Menlo, Consolas, monospace',
      },
      grid: { vertLines: { color: "rgba(42,49,60,0.55)" }, horzLines: { color: "rgba(42,49,60,0.55)" } },
      crosshair: {
        mode: CrosshairMode.Normal,
        vertLine: { color: "#5d6675", style: LineStyle.Dashed, labelBackgroundColor: "#2a313c" },
        horzLine: { color: "#5d6675", style: LineStyle.Dashed, labelBackgroundColor: "#2a313c" },
      },
      rightPriceScale: { borderColor: "#232a34" },
      timeScale: {
        borderColor: "#232a34",
        timeVisible: true,
        secondsVisible: false,
        rightOffset: 6,
        barSpacing: 8,
        // The library labels time in UTC: these follow the trader's clock instead.
        tickMarkFormatter: (time, kind) => formatClock(time * 1000, TICK_FORMATS[kind] ?? "minutes"),
      },
      // Axis and crosshair labels like every other figure on the page: grouped, symbol precision.
      localization: {
        priceFormatter: (price) => formatPrice(price, this.precision),
        timeFormatter: (time) => formatClock(time * 1000, this.interval === "5s" ? "fullSeconds" : "full"),
      },
    });
    this.candleSeries = this.chart.addSeries(CandlestickSeries, { borderVisible: false, ...this.seriesColours() });
    this.candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.26 } });
    this.volumeSeries = this.chart.addSeries(HistogramSeries, {
      priceScaleId: "volume",
      priceFormat: { type: "volume" },
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.chart.subscribeCrosshairMove((param) => {
      this.hoverTime = param.time ?? null;
      requestWrite(this.writeReadout);
    });
    this.symbol = null;
    this.interval = null;
    this.precision = 2;
    this.candles = [];
    this.token = 0;
    this.buffer = null; // ticks that arrived while history was loading
    this.reset = false;
    this.dirtyFrom = Infinity;
    this.historyLast = null;
    this.loadedLast = null; // the newest candle history had: later ones are built here
    this.hoverTime = null;
    this.state = "idle";
    // Read by the browser tests (window.tickerChart) and handy in the console.
    this.stats = { loads: 0, history: 0, liveTicks: 0, newCandles: 0, reconciled: 0, trimmed: 0 };
    this.flush = () => this.render();
    this.writeReadout = () => this.renderReadout();
    this.building = 0; // history requests answered with (almost) nothing so far
    window.addEventListener("ticker:prefs", () => this.preferencesChanged());
  }

  seriesColours() {
    const { up, down } = this.colours;
    return { upColor: up, downColor: down, wickUpColor: up, wickDownColor: down };
  }

  volumeBar(c) {
    return { time: c.time, value: c.volume, color: c.close >= c.open ? this.volumeColours.up : this.volumeColours.down };
  }

  /** Palette or clock changed: recolour the candles, relabel the time axis. */
  preferencesChanged() {
    this.colours = trendColours();
    this.volumeColours = { up: withAlpha(this.colours.up, 0.35), down: withAlpha(this.colours.down, 0.35) };
    this.candleSeries.applyOptions(this.seriesColours());
    // New formatter functions make the library redraw its time labels.
    this.chart.applyOptions({
      timeScale: { tickMarkFormatter: (time, kind) => formatClock(time * 1000, TICK_FORMATS[kind] ?? "minutes") },
      localization: {
        timeFormatter: (time) => formatClock(time * 1000, this.interval === "5s" ? "fullSeconds" : "full"),
      },
    });
    this.reset = true;
    requestWrite(this.flush);
  }

  /** The charted symbol left the catalog: show nothing rather than a dead series. */
  clear() {
    this.token += 1;
    this.symbol = null;
    this.interval = null;
    this.candles = [];
    this.buffer = null;
    this.reset = true;
    this.setState("idle");
  }

  /** Chart ``symbol`` in ``interval``: load its history, then follow its ticks. */
  show(symbol, interval, precision) {
    if (symbol === this.symbol && interval === this.interval) return;
    this.symbol = symbol;
    this.interval = interval;
    this.precision = precision;
    this.building = 0;
    const minMove = 10 ** -precision;
    this.candleSeries.applyOptions({ priceFormat: { type: "price", precision, minMove } });
    this.chart.applyOptions({ timeScale: { secondsVisible: interval === "5s" } });
    this.load();
  }

  /** Reload history: the stream could not fill a gap (a fresh snapshot replaced the series). */
  reload() {
    if (this.symbol) this.load();
  }

  async load() {
    const token = ++this.token;
    const { symbol, interval } = this;
    this.buffer = [];
    this.candles = [];
    this.reset = true;
    this.setState("loading");
    const url = `/api/symbols/${encodeURIComponent(symbol)}/candles/?interval=${interval}&limit=${HISTORY_LIMIT}`;
    let data;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (err) {
      if (token !== this.token) return;
      // The server may be restarting: the stream reconnects by itself, history is retried.
      console.warn(`candle history for ${symbol} ${interval} failed (${err.message}); retrying`);
      this.setState("retrying");
      setTimeout(() => token === this.token && this.load(), RETRY_MS);
      return;
    }
    if (token !== this.token) return; // another symbol or interval was chosen meanwhile
    if (data.candles.length < 2 && this.building < BUILDING_RETRIES) {
      // Its history is still being generated (a symbol just added): say so, ask again.
      this.building += 1;
      this.setState("building");
      setTimeout(() => token === this.token && this.load(), RETRY_MS);
      return;
    }
    this.candles = data.candles.map(fromWire);
    const last = this.candles[this.candles.length - 1];
    this.historyLast = last && !last.closed ? last.time : null;
    this.loadedLast = last ? last.time : null;
    const buffered = this.buffer;
    this.buffer = null;
    for (const tick of buffered) this.aggregate(tick, true);
    this.stats.loads += 1;
    this.stats.history = data.candles.length;
    this.reset = true;
    this.setState("live");
  }

  setState(state) {
    this.state = state;
    requestWrite(this.flush);
  }

  ticks(ticks) {
    let mine = false;
    for (const tick of ticks) {
      if (tick.symbol !== this.symbol) continue;
      mine = true;
      if (this.buffer) {
        this.buffer.push(tick);
        if (this.buffer.length > 10_000) this.buffer.shift();
      } else {
        this.aggregate(tick, false);
      }
    }
    if (mine && !this.buffer) requestWrite(this.flush);
  }

  aggregate(tick, replayed) {
    const ms = this.intervals[this.interval];
    const time = (tick.ts - (tick.ts % ms)) / 1000;
    const candles = this.candles;
    const last = candles[candles.length - 1];
    if (last && time < last.time) return; // inside history that is already closed
    this.stats.liveTicks += 1;
    if (last && time === last.time) {
      last.high = Math.max(last.high, tick.price);
      last.low = Math.min(last.low, tick.price);
      last.close = tick.price;
      // A replayed tick inside the candle history already held was probably counted by it.
      if (!(replayed && time === this.historyLast)) last.volume += tick.volume;
      this.dirtyFrom = Math.min(this.dirtyFrom, candles.length - 1);
      return;
    }
    if (last) {
      last.closed = true;
      if (last.time === this.historyLast) this.reconcile(last.time);
    }
    const p = tick.price;
    candles.push({ time, open: p, high: p, low: p, close: p, volume: tick.volume, closed: false });
    this.stats.newCandles += 1;
    this.dirtyFrom = Math.min(this.dirtyFrom, candles.length - 1);
    if (candles.length > MAX_CANDLES) {
      candles.splice(0, candles.length - HISTORY_LIMIT);
      this.stats.trimmed += 1;
      this.reset = true;
    }
  }

  /** Replace the candle that was forming at load time by the server's closed one. */
  async reconcile(time) {
    const token = this.token;
    this.historyLast = null;
    try {
      const url = `/api/symbols/${encodeURIComponent(this.symbol)}/candles/?interval=${this.interval}&limit=5`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok || token !== this.token) return;
      const data = await response.json();
      if (token !== this.token) return;
      const closed = data.candles.map(fromWire).find((c) => c.time === time && c.closed);
      const at = this.candles.findIndex((c) => c.time === time);
      if (!closed || at < 0) return;
      this.candles[at] = closed;
      this.stats.reconciled += 1;
      this.fixed = closed;
      requestWrite(this.flush);
    } catch {
      // Only that candle's volume stays approximate.
    }
  }

  render() {
    const c = this.container;
    if (c.dataset.state !== this.state) c.dataset.state = this.state;
    if (c.dataset.symbol !== this.symbol) c.dataset.symbol = this.symbol;
    if (c.dataset.interval !== this.interval) c.dataset.interval = this.interval;
    if (this.state !== "live") {
      if (this.reset) {
        this.candleSeries.setData([]);
        this.volumeSeries.setData([]);
      }
      this.renderReadout();
      return;
    }
    if (this.reset) {
      this.candleSeries.setData(this.candles.map(bar));
      this.volumeSeries.setData(this.candles.map((c) => this.volumeBar(c)));
      this.chart.timeScale().scrollToRealTime();
      this.reset = false;
      this.dirtyFrom = Infinity;
      this.fixed = null;
    } else {
      if (this.fixed) {
        this.candleSeries.update(bar(this.fixed), true);
        this.volumeSeries.update(this.volumeBar(this.fixed), true);
        this.fixed = null;
      }
      for (let i = this.dirtyFrom; i < this.candles.length; i += 1) {
        this.candleSeries.update(bar(this.candles[i]));
        this.volumeSeries.update(this.volumeBar(this.candles[i]));
      }
      this.dirtyFrom = Infinity;
    }
    this.renderReadout();
  }

  candleAt(time) {
    const candles = this.candles;
    let lo = 0;
    let hi = candles.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (candles[mid].time === time) return candles[mid];
      if (candles[mid].time < time) lo = mid + 1;
      else hi = mid - 1;
    }
    return null;
  }

  renderReadout() {
    const candle = (this.hoverTime !== null && this.candleAt(this.hoverTime)) || this.candles[this.candles.length - 1];
    const p = this.precision;
    const set = (name, text) => {
      const el = this.readout.querySelector(`.${name}`);
      if (el && el.textContent !== text) el.textContent = text;
    };
    if (!candle) {
      for (const name of ["t", "o", "h", "l", "c", "chg", "v"]) set(name, "—");
      return;
    }
    set("t", formatClock(candle.time * 1000, this.interval === "5s" ? "legendSeconds" : "legend"));
    set("o", formatPrice(candle.open, p));
    set("h", formatPrice(candle.high, p));
    set("l", formatPrice(candle.low, p));
    set("c", formatPrice(candle.close, p));
    const change = candle.close - candle.open;
    set("chg", `${formatSigned(change, p)} (${formatPct(candle.open ? (change / candle.open) * 100 : 0)})`);
    set("v", formatVolume(candle.volume));
    const trend = change > 0 ? "up" : change < 0 ? "down" : "flat";
    if (this.readout.dataset.trend !== trend) this.readout.dataset.trend = trend;
    const hovering = this.hoverTime !== null ? "true" : "false";
    if (this.readout.dataset.hover !== hovering) this.readout.dataset.hover = hovering;
  }

  /** What the browser tests check: the chart's symbol, interval, state and candles. */
  info() {
    const last = this.candles[this.candles.length - 1];
    return {
      symbol: this.symbol,
      interval: this.interval,
      state: this.state,
      count: this.candles.length,
      clock: clockName(),
      loadedLast: this.loadedLast,
      last: last ? { ...last } : null,
      closed: this.candles.filter((c) => c.closed).map((c) => ({ ...c })),
      stats: { ...this.stats },
    };
  }
}

/** The interval switch: buttons with data-interval inside ``root``. */
export function bindIntervals(root, current, onChange) {
  const buttons = [...root.querySelectorAll("button[data-interval]")];
  const mark = (interval) => {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.interval === interval));
  };
  mark(current);
  for (const b of buttons) {
    b.addEventListener("click", () => {
      mark(b.dataset.interval);
      onChange(b.dataset.interval);
    });
  }
  return mark;
}
