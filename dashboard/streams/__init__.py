"""The streaming side: WebSocket consumers, their routes and admission, the per-process
market feed and heartbeat hub, per-connection subscription state and abuse policy.

It builds on ``dashboard.market`` (codec, store, groups) and the catalog selectors;
nothing outside the web process imports it.
"""
