// The connection indicator: live / reconnecting / stale, with the age of the last tick.
//
// It also sets body[data-connection], which the stylesheet uses to grey out every price
// while the connection is not live: a price is never shown as live when it may be stale.

import { formatAge } from "./format.js";
import { requestWrite } from "./frame.js";

export function bindIndicator(element, client) {
  const stateEl = element.querySelector(".state");
  const ageEl = element.querySelector(".age");
  const write = () => {
    const state = client.state;
    if (element.dataset.state !== state) {
      element.dataset.state = state;
      stateEl.textContent = state;
      document.body.dataset.connection = state;
    }
    const age = client.lastTickAge();
    const text = Number.isFinite(age) ? formatAge(age) : "";
    if (ageEl.textContent !== text) ageEl.textContent = text;
    element.title = `Last tick ${text || "not yet"} ago · ${client.stats.reconnects} reconnects · ${client.stats.gaps} gaps healed`;
  };
  const render = () => requestWrite(write);
  // The age keeps counting when nothing arrives: that is the point of showing it.
  setInterval(render, 500);
  return render;
}
