"""The market core that both the web side and the workers use; it imports neither.

- ``protocol``: the wire codec (parse client frames, build server frames, the batch type).
- ``candles``: candle maths and ``INTERVALS_MS``, the one definition of candle intervals.
- ``store``: the Redis key layout, the lease-checked Lua scripts, snapshot and resume reads.
- ``client``: the one factory of Redis clients for market state, with a test seam.
- ``broadcast``: group names and the publish functions, the one way out to the channel layer.
- ``redis_requirements``: the Redis settings the store relies on (``noeviction``).

Imports allowed here: the standard library, orjson, redis, the channel layer API,
``django.conf.settings`` and ``ticker.metrics``. No models, no consumers, nothing from
``workers`` (``tests/test_layers.py`` enforces it).
"""
