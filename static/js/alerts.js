// Price alerts: set one from the grid, the chart or the symbol page; see them fire.
//
// The server evaluates alerts (the producer, every tick window) and pushes an `alert`
// frame to every open stream of the owner; this module only shows them: a toast, and a
// browser Notification when the trader allowed it and the page is not in front. Alerts
// that fired while no page was open are fetched on load (GET /api/alerts/?status=unseen)
// and shown the same way; every shown alert is marked seen (POST /api/alerts/seen/).

import { api } from "./api.js";
import { clockName, formatClock, formatPrice } from "./format.js";
import { requestWrite } from "./frame.js";

const URL = "/api/alerts/";
const TOAST_MS = 20_000;
const CONDITIONS = {
  above: "at or above",
  below: "at or below",
  rise: "rises",
  fall: "falls",
};

function element(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") el.textContent = value;
    else el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

/** "AAPL at or above 190.50", "BTC-USD rises 2.5 % within 15 min". */
export function describe(alert, precision = 2) {
  const what = CONDITIONS[alert.condition] ?? alert.condition;
  if (alert.condition === "above" || alert.condition === "below") {
    return `${alert.symbol} ${what} ${formatPrice(alert.price, precision)}`;
  }
  return `${alert.symbol} ${what} ${alert.percent} % within ${alert.minutes} min`;
}

export class Alerts {
  /**
   * @param {object} options market (for precisions and the current price), and optionally
   *   symbol: the page's one symbol (symbol page)
   */
  constructor({ market }) {
    this.market = market;
    this.shown = new Set(); // alert ids already toasted (a frame and the unseen list may both carry one)
    this.latencies = []; // ms from the crossing tick to the frame here (server and browser clocks), for tests
    this.toasts = element("div", { class: "toasts", role: "log", "aria-live": "assertive", "aria-label": "Price alerts" });
    document.body.append(this.toasts);
    this.dialog = this.buildDialog();
    document.body.append(this.dialog);
  }

  precision(symbol) {
    return this.market.precision(symbol) ?? 2;
  }

  // --- firing ---------------------------------------------------------------------------

  /** An `alert` frame from the stream. */
  fired(alert) {
    if (this.shown.has(alert.id)) return;
    this.latencies.push(Date.now() - alert.triggered_at);
    this.shown.add(alert.id);
    this.toast(alert);
    this.notify(alert);
    this.markSeen([alert.id]);
    if (this.dialog.open && this.dialog.dataset.symbol === alert.symbol) this.refreshList(alert.symbol);
  }

  /** What fired while no page was open. */
  async showUnseen() {
    try {
      const { alerts } = await api("GET", `${URL}?status=unseen`);
      const fresh = alerts.filter((a) => !this.shown.has(a.id)).reverse(); // oldest first
      for (const alert of fresh) {
        this.shown.add(alert.id);
        this.toast(alert, { missed: true });
      }
      if (fresh.length) this.markSeen(fresh.map((a) => a.id));
    } catch (err) {
      console.warn("fired alerts not loaded", err);
    }
  }

  markSeen(ids) {
    api("POST", `${URL}seen/`, { ids }).catch((err) => console.warn("alerts not marked seen", err));
  }

  toast(alert, { missed = false } = {}) {
    const p = this.precision(alert.symbol);
    const close = element("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", text: "×" });
    const toast = element(
      "div",
      { class: "toast", role: "alert", "data-alert-id": String(alert.id), "data-missed": String(missed) },
      element("strong", { text: missed ? "Alert fired while you were away" : "Price alert" }),
      element("span", { class: "toast-what", text: describe(alert, p) }),
      element("span", {
        class: "toast-when num",
        text: `${formatPrice(alert.triggered_price, p)} at ${formatClock(alert.triggered_at)} ${clockName()}`,
      }),
      close,
    );
    const remove = () => requestWrite(() => toast.remove());
    close.addEventListener("click", remove);
    requestWrite(() => this.toasts.prepend(toast));
    if (!missed) setTimeout(remove, TOAST_MS);
  }

  /** A short confirmation in the toast stack. */
  note(text) {
    const toast = element("div", { class: "toast note", role: "status" }, element("span", { text }));
    requestWrite(() => this.toasts.prepend(toast));
    setTimeout(() => requestWrite(() => toast.remove()), 4_000);
  }

  notify(alert) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return; // the toast is enough
    const p = this.precision(alert.symbol);
    try {
      new Notification(`Price alert: ${alert.symbol}`, {
        body: `${describe(alert, p)} — ${formatPrice(alert.triggered_price, p)}`,
        tag: `ticker-alert-${alert.id}`,
      });
    } catch (err) {
      console.warn("notification not shown", err);
    }
  }

  // --- setting ------------------------------------------------------------------------

  buildDialog() {
    const dialog = element("dialog", { class: "wl-dialog alert-dialog", "aria-labelledby": "alert-dialog-title" });
    dialog.innerHTML = `
      <form method="dialog" novalidate>
        <h2 id="alert-dialog-title">Price alert · <span class="alert-symbol"></span></h2>
        <p class="alert-last">Last <span class="num"></span></p>
        <label>When the price
          <select name="condition">
            <option value="above">is at or above</option>
            <option value="below">is at or below</option>
            <option value="rise">rises by</option>
            <option value="fall">falls by</option>
          </select>
        </label>
        <label class="for-price">Price <input name="price" inputmode="decimal" autocomplete="off"></label>
        <label class="for-move">Percent <input name="percent" inputmode="decimal" autocomplete="off" value="1"></label>
        <label class="for-move">Within minutes <input name="minutes" inputmode="numeric" autocomplete="off" value="5"></label>
        <p class="wl-error" role="alert"></p>
        <div class="wl-actions">
          <button type="button" class="cancel">Close</button>
          <button type="submit" value="ok" class="primary">Set alert</button>
        </div>
        <h3>Waiting on this symbol</h3>
        <ul class="alert-list" aria-live="polite"></ul>
      </form>`;
    const form = dialog.querySelector("form");
    const condition = form.elements.condition;
    const syncFields = () => {
      dialog.dataset.kind = condition.value === "above" || condition.value === "below" ? "price" : "move";
    };
    condition.addEventListener("change", syncFields);
    syncFields();
    dialog.querySelector(".cancel").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(form);
    });
    dialog.querySelector(".alert-list").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-delete]");
      if (button) this.remove(Number(button.dataset.delete), dialog.dataset.symbol);
    });
    return dialog;
  }

  /** Open the alert form for `symbol`, its price field set to the current price. */
  open(symbol) {
    if (!symbol) return;
    const dialog = this.dialog;
    const form = dialog.querySelector("form");
    dialog.dataset.symbol = symbol;
    dialog.querySelector(".alert-symbol").textContent = symbol;
    const q = this.market.quote(symbol);
    const p = this.precision(symbol);
    dialog.querySelector(".alert-last .num").textContent = q ? formatPrice(q.price, p) : "—";
    form.elements.price.value = q ? q.price.toFixed(p) : "";
    this.message("");
    this.refreshList(symbol);
    if (!dialog.open) dialog.showModal();
    form.elements.price.focus();
    form.elements.price.select();
  }

  message(text, kind = "") {
    const el = this.dialog.querySelector(".wl-error");
    el.textContent = text;
    el.dataset.kind = kind;
  }

  async submit(form) {
    const symbol = this.dialog.dataset.symbol;
    const condition = form.elements.condition.value;
    const body = { symbol, condition };
    if (condition === "above" || condition === "below") body.price = form.elements.price.value.trim();
    else {
      body.percent = form.elements.percent.value.trim();
      body.minutes = Number(form.elements.minutes.value);
    }
    // Asked on a click (browsers require a gesture); a refusal only means no Notification.
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    try {
      const alert = await api("POST", URL, body);
      // Closed, so the page (and its toasts) stay usable; reopening lists what waits.
      this.dialog.close();
      this.note(`Alert set: ${describe(alert, this.precision(symbol))}`);
    } catch (err) {
      this.message(err.message, "error");
      const input = err.field && form.elements[err.field];
      if (input) input.focus();
    }
  }

  async refreshList(symbol) {
    const list = this.dialog.querySelector(".alert-list");
    try {
      const { alerts } = await api("GET", `${URL}?status=active`);
      const p = this.precision(symbol);
      const items = alerts
        .filter((a) => a.symbol === symbol)
        .map((a) =>
          element(
            "li",
            { "data-alert-id": String(a.id) },
            element("span", { text: describe(a, p) }),
            element("button", { type: "button", "data-delete": String(a.id), "aria-label": `Delete ${describe(a, p)}`, text: "Delete" }),
          ),
        );
      requestWrite(() => list.replaceChildren(...(items.length ? items : [element("li", { class: "empty", text: "None" })])));
    } catch (err) {
      console.warn("alerts not listed", err);
    }
  }

  async remove(id, symbol) {
    try {
      await api("DELETE", `${URL}${id}/`);
    } catch (err) {
      this.message(err.message, "error");
    }
    this.refreshList(symbol);
  }
}
