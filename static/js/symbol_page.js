// The symbol page: quote, session stats and recent ticks from the single-symbol stream.

import { bindIndicator } from "./connection.js";
import { formatPrice, formatSigned, formatTime, formatVolume } from "./format.js";
import { StreamClient } from "./protocol.js";

const MAX_ROWS = 30;
const root = document.querySelector(".symbol-page");
const symbol = root.dataset.symbol;
const precision = Number(root.dataset.precision);
const cell = (name) => root.querySelector(`.quote .${name}`);
const tbody = root.querySelector(".ticks tbody");
const statusEl = root.querySelector(".status");
let quote = null;
let pending = [];
let scheduled = false;
let render = () => {};

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    if (!quote) return;
    cell("last").textContent = formatPrice(quote.price, precision);
    cell("change").textContent = formatSigned(quote.price - quote.open, precision);
    cell("bid").textContent = formatPrice(quote.bid, precision);
    cell("ask").textContent = formatPrice(quote.ask, precision);
    cell("open").textContent = formatPrice(quote.open, precision);
    cell("high").textContent = formatPrice(quote.high, precision);
    cell("low").textContent = formatPrice(quote.low, precision);
    cell("volume").textContent = formatVolume(quote.volume);
    const rows = pending.slice(-MAX_ROWS).reverse().map((t) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of [
        [formatTime(t.ts), ""], [String(t.seq), "num"], [formatPrice(t.price, precision), "num"], [formatVolume(t.volume), "num"],
      ]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    });
    pending = [];
    tbody.prepend(...rows);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  });
}

function setStatus(status) {
  statusEl.dataset.status = status;
  statusEl.textContent = status;
}

const client = new StreamClient(
  `/ws/symbols/${encodeURIComponent(symbol)}/`,
  {
    onSnapshot: (msg) => {
      if (msg.quote) quote = { ...msg.quote };
      setStatus(msg.status);
      schedule();
    },
    onTicks: (ticks) => {
      for (const t of ticks) {
        quote = quote || { open: t.price, high: t.price, low: t.price, volume: 0 };
        quote.price = t.price;
        quote.bid = t.bid;
        quote.ask = t.ask;
        quote.high = Math.max(quote.high, t.price);
        quote.low = Math.min(quote.low, t.price);
        quote.volume += t.volume;
        pending.push(t);
      }
      schedule();
    },
    onSymbols: (symbols) => {
      const entry = symbols.find((s) => s.symbol === symbol);
      setStatus(entry ? entry.status : "disabled");
    },
    onState: () => render(),
  },
  { symbols: [symbol], autoSubscribed: true },
);
render = bindIndicator(document.getElementById("connection"), client);
client.connect();
window.tickerStream = client;
