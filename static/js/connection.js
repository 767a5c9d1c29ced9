// The connection indicator: live / reconnecting / stale, with the age of the last frame.

export function bindIndicator(element, client) {
  const render = () => {
    const state = client.state;
    element.dataset.state = state;
    if (state === "stale") {
      element.textContent = `stale · ${(client.lastFrameAge() / 1000).toFixed(0)} s`;
    } else {
      element.textContent = state;
    }
    document.body.dataset.connection = state;
  };
  setInterval(render, 1000);
  return render;
}
