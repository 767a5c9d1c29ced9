// The dashboard page: one stream, the grid, and the connection indicator.

import { bindIndicator } from "./connection.js";
import { Grid } from "./grid.js";
import { StreamClient } from "./protocol.js";

const grid = new Grid(document.getElementById("grid"));
let render = () => {};

const client = new StreamClient(
  "/ws/stream/",
  {
    onSnapshot: (msg) => grid.snapshot(msg),
    onTicks: (ticks) => grid.ticks(ticks),
    onSymbols: (symbols) => grid.catalog(symbols),
    onState: () => render(),
    onError: (err) => console.warn("stream error", err.code, err.message),
  },
  { symbols: grid.symbols() },
);
render = bindIndicator(document.getElementById("connection"), client);
client.connect();

// Exposed for the browser tests and for debugging from the console.
window.tickerStream = client;
