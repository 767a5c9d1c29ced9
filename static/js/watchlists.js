// Per-user watchlists: tabs, the symbol picker, add / remove / reorder, create / rename / delete.
//
// The server (/api/watchlists/) is the source of truth; edits show at once and are sent
// in order, one request at a time, each PATCH carrying the list's full ordered symbols.
// A refused edit (400 with a message) is shown and the lists are re-read from the server.

import { api } from "./api.js";

const STORAGE_KEY = "ticker.watchlist";

export class Watchlists {
  /**
   * @param {HTMLElement} root the watchlist panel
   * @param {object} options lists (initial, from the page), market, selected() -> symbol,
   *   onChange() when the shown symbols change, beforeMove() before a reorder
   */
  constructor(root, { lists, market, selected, onChange, beforeMove }) {
    this.root = root;
    this.market = market;
    this.selected = selected;
    this.onChange = onChange;
    this.beforeMove = beforeMove;
    this.lists = lists.map((l) => ({ ...l, symbols: [...l.symbols] }));
    const stored = Number(localStorage.getItem(STORAGE_KEY));
    this.activeId = this.lists.some((l) => l.id === stored) ? stored : (this.lists[0]?.id ?? null);
    this.pending = 0;
    this.queue = Promise.resolve();
    this.tabs = root.querySelector(".wl-tabs");
    this.picker = root.querySelector("select.wl-add");
    this.message = root.querySelector(".wl-msg");
    this.dialog = root.querySelector("dialog.wl-dialog");
    this.bind();
    this.render();
  }

  bind() {
    this.tabs.addEventListener("click", (event) => {
      const tab = event.target.closest("[data-id]");
      if (tab) this.activate(Number(tab.dataset.id));
    });
    this.tabs.addEventListener("dblclick", (event) => {
      if (event.target.closest("[data-id]")) this.askRename();
    });
    this.tabs.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const at = this.lists.findIndex((l) => l.id === this.activeId);
      const next = this.lists[at + (event.key === "ArrowRight" ? 1 : -1)];
      if (next) {
        this.activate(next.id);
        this.tabs.querySelector(`[data-id="${next.id}"]`)?.focus();
      }
      event.preventDefault();
    });
    this.picker.addEventListener("change", () => {
      const symbol = this.picker.value;
      this.picker.value = "";
      if (symbol) this.add(symbol);
    });
    this.dialog.querySelector("button.cancel").addEventListener("click", () => this.dialog.close());
    this.root.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.disabled) return;
      const action = button.dataset.action;
      if (action === "new") this.askCreate();
      else if (action === "rename") this.askRename();
      else if (action === "delete") this.askDelete();
      else if (action === "remove") this.remove(this.selected());
      else if (action === "up") this.move(this.selected(), -1);
      else if (action === "down") this.move(this.selected(), 1);
    });
  }

  active() {
    return this.lists.find((l) => l.id === this.activeId) ?? null;
  }

  /** The active list's symbols that are in the catalog (a disabled symbol is not shown). */
  visibleSymbols() {
    const list = this.active();
    return list ? list.symbols.filter((s) => this.market.entry(s)) : [];
  }

  activate(id) {
    if (id === this.activeId) return;
    this.activeId = id;
    localStorage.setItem(STORAGE_KEY, String(id));
    this.render();
    this.onChange();
  }

  /** The catalog changed: the picker offers new symbols, disabled ones leave the grid. */
  catalogChanged() {
    this.render();
    this.onChange();
  }

  add(symbol) {
    const list = this.active();
    if (!list || list.symbols.includes(symbol)) return;
    list.symbols.push(symbol);
    this.saveSymbols(list);
  }

  remove(symbol) {
    const list = this.active();
    if (!list || !symbol || !list.symbols.includes(symbol)) return;
    list.symbols = list.symbols.filter((s) => s !== symbol);
    this.saveSymbols(list);
  }

  move(symbol, delta) {
    const list = this.active();
    if (!list || !symbol) return;
    this.beforeMove();
    const order = this.visibleSymbols();
    const at = order.indexOf(symbol);
    const to = at + delta;
    if (at < 0 || to < 0 || to >= order.length) return;
    [order[at], order[to]] = [order[to], order[at]];
    list.symbols = order;
    this.saveSymbols(list);
  }

  saveSymbols(list) {
    // Disabled symbols cannot be saved (the API refuses them): the list keeps what is shown.
    list.symbols = list.symbols.filter((s) => this.market.entry(s));
    const symbols = [...list.symbols];
    this.render();
    this.onChange();
    this.enqueue(() => api("PATCH", `/api/watchlists/${list.id}/`, { symbols }));
  }

  enqueue(request) {
    this.pending += 1;
    this.render();
    this.queue = this.queue
      .then(request)
      .then(() => this.say(""))
      .catch(async (err) => {
        this.say(err.message, true);
        await this.resync();
      })
      .finally(() => {
        this.pending -= 1;
        this.render();
      });
    return this.queue;
  }

  async resync() {
    try {
      const data = await api("GET", "/api/watchlists/");
      this.lists = data.watchlists;
      if (!this.active()) this.activeId = this.lists[0]?.id ?? null;
      this.render();
      this.onChange();
    } catch {
      // Offline: the next edit tries again.
    }
  }

  say(text, error = false) {
    this.message.textContent = text;
    this.message.dataset.error = String(error);
  }

  /** The name dialog (or a confirmation); ``handler`` runs on Save and may throw a message. */
  ask(title, { value = "", confirm = null }, handler) {
    const form = this.dialog.querySelector("form");
    const input = form.querySelector("input[name=name]");
    const error = form.querySelector(".wl-error");
    this.dialog.querySelector(".wl-title").textContent = title;
    input.closest("label").hidden = Boolean(confirm);
    input.required = !confirm;
    input.value = value;
    error.textContent = confirm ?? "";
    error.dataset.kind = confirm ? "confirm" : "error";
    this.dialog.querySelector("button[value=ok]").textContent = confirm ? "Delete" : "Save";
    form.onsubmit = async (event) => {
      event.preventDefault();
      try {
        await handler(input.value);
        this.dialog.close();
      } catch (err) {
        error.dataset.kind = "error";
        error.textContent = err.message;
      }
    };
    this.dialog.showModal();
    if (!confirm) input.select();
  }

  askCreate() {
    this.ask("New watchlist", {}, async (name) => {
      const created = await api("POST", "/api/watchlists/", { name, symbols: [] });
      this.lists.push(created);
      this.activate(created.id);
    });
  }

  askRename() {
    const list = this.active();
    if (!list) return;
    this.ask("Rename watchlist", { value: list.name }, async (name) => {
      const renamed = await api("PATCH", `/api/watchlists/${list.id}/`, { name });
      list.name = renamed.name;
      this.render();
    });
  }

  askDelete() {
    const list = this.active();
    if (!list || this.lists.length < 2) return;
    const confirm = `Delete “${list.name}” and its ${list.symbols.length} symbols?`;
    this.ask("Delete watchlist", { confirm }, async () => {
      await api("DELETE", `/api/watchlists/${list.id}/`);
      this.lists = this.lists.filter((l) => l.id !== list.id);
      this.activate(this.lists[0]?.id ?? null);
    });
  }

  render() {
    const active = this.active();
    const tabs = this.lists.map((list) => {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.setAttribute("role", "tab");
      tab.dataset.id = String(list.id);
      tab.setAttribute("aria-selected", String(list.id === this.activeId));
      tab.tabIndex = list.id === this.activeId ? 0 : -1;
      tab.textContent = list.name;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(list.symbols.filter((s) => this.market.entry(s)).length);
      tab.append(count);
      return tab;
    });
    this.tabs.replaceChildren(...tabs);
    const inList = new Set(active ? active.symbols : []);
    const options = [...this.market.catalog.values()]
      .filter((entry) => !inList.has(entry.symbol))
      .sort((a, b) => a.symbol.localeCompare(b.symbol))
      .map((entry) => {
        const option = document.createElement("option");
        option.value = entry.symbol;
        option.textContent = `${entry.symbol} · ${entry.name}${entry.status === "halted" ? " (halted)" : ""}`;
        return option;
      });
    const placeholder = document.createElement("option");
    placeholder.value = "";
    placeholder.textContent = options.length ? "+ Add symbol…" : "All symbols listed";
    this.picker.replaceChildren(placeholder, ...options);
    this.picker.disabled = !active || options.length === 0;
    this.renderTools();
  }

  /** Enable the row tools for the grid's selection (cheap: runs when the selection moves). */
  renderTools() {
    const active = this.active();
    const selected = this.selected();
    const order = this.visibleSymbols();
    const at = order.indexOf(selected);
    const setDisabled = (action, disabled) => {
      const button = this.root.querySelector(`button[data-action="${action}"]`);
      if (button) button.disabled = disabled;
    };
    setDisabled("remove", at < 0);
    setDisabled("up", at <= 0);
    setDisabled("down", at < 0 || at >= order.length - 1);
    setDisabled("rename", !active);
    setDisabled("delete", this.lists.length < 2);
    this.root.dataset.pending = String(this.pending);
  }
}
