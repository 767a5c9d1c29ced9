// The ticker tape: the biggest movers (by |change %|) of the symbols on the page, scrolling.
//
// The scroll is a CSS transform animation (compositor only, no main-thread work per
// frame). The ranking is rebuilt only when a loop of the tape completes (or when it is
// empty), so items never jump while they are read; prices inside it update every frame.
// Each mover is a button (Tab reaches it, Enter or Space charts it); the second copy of
// the strip, there only for the seamless loop, is hidden from assistive technology and
// out of the tab order.

import { formatPct, formatPrice } from "./format.js";

const MOVERS = 12;
const PX_PER_SECOND = 55;
// A glance widget: its figures refresh twice a second, not on every frame (each write
// repaints the whole scrolling strip).
const REFRESH_MS = 500;

export class Tape {
  constructor(root, market, { onPick, requestRender }) {
    this.root = root;
    this.track = root.querySelector(".tape-track");
    this.market = market;
    this.requestRender = requestRender;
    this.items = new Map(); // symbol -> [li, li] (the strip is drawn twice for a seamless loop)
    this.symbols = [];
    this.rerank = true;
    this.stale = new Set(); // symbols whose figures changed since the last refresh
    this.refreshedAt = 0;
    this.track.addEventListener("animationiteration", () => {
      this.rerank = true;
      this.requestRender();
    });
    root.addEventListener("click", (event) => {
      const item = event.target.closest("[data-symbol]");
      if (item) onPick(item.dataset.symbol);
    });
  }

  /** The symbols it may rank (what the page shows); a change re-ranks at once. */
  setSymbols(symbols) {
    this.symbols = symbols;
    this.rerank = true;
    this.requestRender();
  }

  ranking() {
    const quoted = this.symbols.filter((s) => this.market.quote(s) && this.market.entry(s));
    quoted.sort((a, b) => Math.abs(this.market.quote(b).change_pct) - Math.abs(this.market.quote(a).change_pct));
    return quoted.slice(0, MOVERS);
  }

  render(dirty, now) {
    for (const symbol of dirty) if (this.items.has(symbol)) this.stale.add(symbol);
    if (this.rerank || (this.items.size === 0 && dirty.size)) {
      this.rebuild();
    } else if (this.stale.size && now - this.refreshedAt >= REFRESH_MS) {
      for (const symbol of this.stale) for (const li of this.items.get(symbol) ?? []) this.fill(li, symbol);
    } else {
      if (this.stale.size && !this.timer) {
        // Come back for the refresh even if the market goes quiet.
        this.timer = setTimeout(() => {
          this.timer = 0;
          this.requestRender();
        }, REFRESH_MS);
      }
      return;
    }
    this.stale.clear();
    this.refreshedAt = now;
  }

  rebuild() {
    this.rerank = false;
    const ranked = this.ranking();
    this.items = new Map(ranked.map((s) => [s, []]));
    const strips = [0, 1].map((copy) => {
      const ul = document.createElement("ul");
      ul.className = "tape-strip";
      if (copy) ul.setAttribute("aria-hidden", "true");
      for (const symbol of ranked) {
        const li = document.createElement("li");
        li.dataset.symbol = symbol;
        li.innerHTML =
          '<button type="button" class="t-item"><span class="t-sym"></span><span class="t-px"></span><span class="t-chg"></span></button>';
        li.querySelector(".t-sym").textContent = symbol;
        if (copy) li.firstChild.tabIndex = -1;
        this.fill(li, symbol);
        this.items.get(symbol).push(li);
        ul.append(li);
      }
      return ul;
    });
    this.track.replaceChildren(...strips);
    // One strip's width sets the loop; a strip narrower than the tape does not scroll.
    const width = strips[0].scrollWidth;
    const scrolls = ranked.length > 0 && width > this.root.clientWidth;
    this.track.dataset.scroll = String(scrolls);
    this.track.style.setProperty("--tape-duration", `${Math.max(10, width / PX_PER_SECOND).toFixed(1)}s`);
  }

  fill(li, symbol) {
    const q = this.market.quote(symbol);
    if (!q) return;
    const [, px, chg] = li.firstChild.children;
    const price = formatPrice(q.price, this.market.precision(symbol));
    const pct = formatPct(q.change_pct);
    if (px.textContent !== price) px.textContent = price;
    if (chg.textContent !== pct) chg.textContent = pct;
    const trend = q.change_pct > 0 ? "up" : q.change_pct < 0 ? "down" : "flat";
    if (li.dataset.trend !== trend) li.dataset.trend = trend;
    const status = this.market.status(symbol);
    if (li.dataset.status !== status) li.dataset.status = status;
  }
}
