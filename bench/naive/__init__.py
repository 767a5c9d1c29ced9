"""The tutorial pattern, as a reference: not part of Ticker.

A tiny Django project: a sync ``JsonWebsocketConsumer`` joining one group per symbol,
a producer process calling ``async_to_sync(channel_layer.group_send)`` once per tick,
and channels-redis's core layer at its default settings. It speaks just enough of
Ticker's protocol (``hello``, ``subscribe`` -> ``ack`` + ``snapshot``, ``ticks`` with
``symbol``/``seq``/``ts``) for the same load client to measure it.
"""
