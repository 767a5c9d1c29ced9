// Ticker wire protocol v1 client (mirrors dashboard/market/protocol.py; spec in docs/protocol.md).
//
// One StreamClient per page keeps one WebSocket open: it subscribes to what the page
// shows, tracks (epoch, seq) per symbol, detects gaps, and on any drop reconnects with
// exponential backoff and jitter, then resubscribes with `since` so the server can
// send exactly the missed ticks or a fresh snapshot.
//
// A symbol's order book (the "depth" and "trades" channels) is subscribed apart from its
// ticks (subscribeBook): kept across reconnects like the ticks, sent again after every
// hello. The book's own sequence (U/u) is checked by its model (order_book.js), which
// asks for a fresh depth snapshot here (resyncDepth) when it sees a gap.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const CLOSE_SERVICE_RESTART = 1012;
const RESTART_JITTER_MS = 500;
const CLOSE_NOT_AUTHENTICATED = 4401;
const BOOK_CHANNELS = ["depth", "trades"];

export function streamUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

export class StreamClient {
  /**
   * @param {string} path e.g. "/ws/stream/" or "/ws/symbols/AAPL/"
   * @param {object} handlers onHello, onSnapshot, onTicks, onSymbols, onState, onError, onAlert
   * @param {object} options autoSubscribed: the endpoint subscribes by itself (single-symbol stream)
   */
  constructor(path, handlers = {}, options = {}) {
    // handlers also: onDepthSnapshot, onDepth, onTrades (the order book channels)
    this.path = path;
    this.handlers = handlers;
    this.autoSubscribed = options.autoSubscribed || false;
    this.wanted = new Set(options.symbols || []);
    this.interval = options.interval || "1m";
    this.positions = new Map(); // symbol -> {epoch, seq}
    this.attempt = 0;
    this.nextId = 1;
    this.heartbeatMs = 5000;
    this.lastFrameAt = 0;
    this.lastTickAt = 0; // the freshness of the prices shown, for the connection indicator
    this.state = "connecting";
    this.ws = null;
    this.closedByUs = false;
    this.watchdog = null;
    this.reconnectTimer = null;
    this.stats = { frames: 0, ticks: 0, gaps: 0, reconnects: 0, recovered: 0, snapshots: 0, retried: 0 };
    this.pending = new Map(); // subscribe id -> symbols, until its ack or error
    this.books = new Map(); // symbol -> depth levels wanted, with its trades
    this.pendingBooks = new Map(); // channel subscribe id -> {symbol, channels}, until answered
    this.limits = {};
  }

  connect() {
    this.closedByUs = false;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(streamUrl(this.connectPath()));
    this.ws = ws;
    // Handlers check `ws === this.ws`: a replaced socket must not steer the client.
    ws.onmessage = (event) => ws === this.ws && this.onFrame(event.data);
    ws.onclose = (event) => ws === this.ws && this.onClose(event);
    ws.onerror = () => {}; // onclose follows and handles it
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkLiveness(), 500);
  }

  // A single-symbol stream resumes on connect from `?epoch=&seq=` (no snapshot when it can).
  connectPath() {
    if (!this.autoSubscribed) return this.path;
    const [symbol] = [...this.wanted];
    const pos = this.positions.get(symbol);
    if (!pos || !pos.epoch) return this.path;
    return `${this.path}?epoch=${encodeURIComponent(pos.epoch)}&seq=${pos.seq}`;
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.watchdog);
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close(1000);
  }

  subscribe(symbols) {
    const fresh = symbols.filter((s) => !this.wanted.has(s));
    fresh.forEach((s) => this.wanted.add(s));
    if (fresh.length && this.isOpen()) this.sendSubscribe(fresh);
  }

  unsubscribe(symbols) {
    const gone = symbols.filter((s) => this.wanted.delete(s));
    gone.forEach((s) => this.positions.delete(s));
    gone.forEach((s) => this.books.delete(s)); // an unsubscribe without channels ends them all
    if (gone.length && this.isOpen()) this.send({ op: "unsubscribe", id: this.nextId++, symbols: gone });
  }

  /** Stream ``symbol``'s order book (best ``levels`` per side) and its trades, until unsubscribeBook. */
  subscribeBook(symbol, levels = 20) {
    const known = this.books.get(symbol);
    this.books.set(symbol, levels);
    if (known !== levels && this.isOpen()) this.sendBook(symbol, BOOK_CHANNELS);
  }

  unsubscribeBook(symbol) {
    if (!this.books.delete(symbol)) return;
    if (this.isOpen()) this.send({ op: "unsubscribe", id: this.nextId++, symbols: [symbol], channels: BOOK_CHANNELS });
  }

  /** The book's model saw a gap (another U or epoch): ask for a fresh depth snapshot. */
  resyncDepth(symbol) {
    if (this.books.has(symbol) && this.isOpen()) this.sendBook(symbol, ["depth"]);
  }

  sendBook(symbol, channels) {
    const wanted = this.books.get(symbol);
    const levels = Math.min(wanted, this.limits.max_depth_levels || wanted);
    const frame = { op: "subscribe", id: this.nextId++, symbols: [symbol], channels, depth_levels: levels };
    this.pendingBooks.set(frame.id, { symbol, channels });
    this.send(frame);
  }

  isOpen() {
    return this.ws && this.ws.readyState === WebSocket.OPEN && this.helloSeen;
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  sendSubscribe(symbols) {
    const since = {};
    for (const s of symbols) {
      const pos = this.positions.get(s);
      if (pos && pos.epoch) since[s] = { epoch: pos.epoch, seq: pos.seq };
    }
    const frame = { op: "subscribe", id: this.nextId++, symbols, interval: this.interval };
    if (Object.keys(since).length) frame.since = since;
    this.pending.set(frame.id, symbols);
    this.send(frame);
  }

  onFrame(text) {
    this.lastFrameAt = performance.now();
    this.stats.frames += 1;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "hello":
        this.helloSeen = true;
        this.heartbeatMs = msg.heartbeat_ms || this.heartbeatMs;
        this.limits = msg.limits || {};
        this.attempt = 0;
        this.setState("live");
        this.call("onHello", msg);
        // A single-symbol stream subscribes (or resumes) us by itself.
        if (!this.autoSubscribed && this.wanted.size) {
          this.sendSubscribe([...this.wanted]);
        }
        // A new connection starts with no book: every wanted one is asked for again.
        for (const symbol of this.books.keys()) this.sendBook(symbol, BOOK_CHANNELS);
        break;
      case "snapshot":
        // One that crossed an unsubscribe in flight: the page no longer shows the symbol.
        if (!this.wanted.has(msg.symbol)) break;
        this.stats.snapshots += 1;
        this.positions.set(msg.symbol, { epoch: msg.epoch, seq: msg.seq });
        this.lastTickAt = performance.now();
        this.call("onSnapshot", msg);
        break;
      case "ticks":
        this.onTicks(msg);
        break;
      case "depth_snapshot":
        // As for ticks: one that crossed an unsubscribe in flight is dropped.
        if (this.books.has(msg.symbol)) this.call("onDepthSnapshot", msg);
        break;
      case "depth":
        if (this.books.has(msg.symbol)) this.call("onDepth", msg);
        break;
      case "trades": {
        const trades = (msg.data || []).filter((t) => this.books.has(t.symbol));
        if (trades.length) this.call("onTrades", trades);
        break;
      }
      case "symbols":
        this.call("onSymbols", msg.symbols);
        break;
      case "ack":
        this.pending.delete(msg.id);
        this.pendingBooks.delete(msg.id);
        break;
      case "error":
        this.retryRefused(msg);
        this.call("onError", msg);
        break;
      case "alert":
        this.call("onAlert", msg.alert); // a price alert of this user fired (alerts.js)
        break;
      default:
        break; // pong, heartbeat: liveness only
    }
  }

  /** A subscribe refused for now (over the read budget, store away) is sent again later. */
  retryRefused(msg) {
    const book = this.pendingBooks.get(msg.id);
    this.pendingBooks.delete(msg.id);
    if (book && (msg.code === "rate_limited" || msg.code === "unavailable")) {
      const delay = (msg.retry_after_ms || 1000) * (1 + Math.random() * 0.2);
      this.stats.retried += 1;
      setTimeout(() => this.books.has(book.symbol) && this.isOpen() && this.sendBook(book.symbol, book.channels), delay);
      return;
    }
    const symbols = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    if (!symbols || (msg.code !== "rate_limited" && msg.code !== "unavailable")) return;
    const delay = (msg.retry_after_ms || 1000) * (1 + Math.random() * 0.2);
    this.stats.retried += 1;
    setTimeout(() => {
      const still = symbols.filter((s) => this.wanted.has(s));
      if (still.length && this.isOpen()) this.sendSubscribe(still);
    }, delay);
  }

  onTicks(msg) {
    if (msg.recovered) this.stats.recovered += 1;
    const accepted = [];
    const resync = new Set();
    for (const tick of msg.data) {
      const pos = this.positions.get(tick.symbol);
      if (!pos || resync.has(tick.symbol)) continue;
      if (tick.seq <= pos.seq) continue; // already seen
      if (tick.seq !== pos.seq + 1) {
        // A gap (or a new epoch restarting at 1): ask the server to fill or resnapshot.
        this.stats.gaps += 1;
        resync.add(tick.symbol);
        continue;
      }
      pos.seq = tick.seq;
      accepted.push(tick);
    }
    this.stats.ticks += accepted.length;
    if (accepted.length) {
      this.lastTickAt = performance.now();
      this.call("onTicks", accepted);
    }
    if (resync.size && this.isOpen()) this.sendSubscribe([...resync]);
  }

  checkLiveness() {
    if (this.state !== "live" && this.state !== "stale") return;
    const silent = performance.now() - this.lastFrameAt;
    if (silent > this.heartbeatMs * 3) {
      // Nothing at all, not even a heartbeat: the connection is dead, replace it.
      const dead = this.ws;
      this.ws = null;
      dead.close(4000);
      this.onClose({ code: 4000 });
    } else if (silent > this.heartbeatMs * 1.5) {
      this.setState("stale");
    } else if (this.state === "stale") {
      this.setState("live");
    }
  }

  onClose(event) {
    this.helloSeen = false;
    this.pending.clear(); // a new socket resubscribes everything wanted
    this.pendingBooks.clear();
    clearInterval(this.watchdog);
    if (this.closedByUs) return;
    if (event.code === CLOSE_NOT_AUTHENTICATED) {
      this.setState("signed-out");
      window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    if (this.reconnectTimer) return;
    this.attempt += 1;
    this.stats.reconnects += 1;
    this.stats.lastCloseCode = event.code;
    this.setState("reconnecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this.attempt - 1));
    // A server that is restarting (1012) sends its clients elsewhere on purpose: the other
    // processes are up, so no backoff, but "full jitter" over RESTART_JITTER_MS so that its
    // clients do not all arrive there in the same instant.
    const delay =
      event.code === CLOSE_SERVICE_RESTART
        ? Math.random() * RESTART_JITTER_MS
        : ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.call("onState", state);
  }

  lastFrameAge() {
    return this.lastFrameAt ? performance.now() - this.lastFrameAt : Infinity;
  }

  lastTickAge() {
    return this.lastTickAt ? performance.now() - this.lastTickAt : Infinity;
  }

  call(name, arg) {
    const fn = this.handlers[name];
    if (fn) fn(arg);
  }
}
