"""The garbage collector's settings for the web server process.

CPython's full (generation 2) collection scans every container object the process
holds, and it runs whenever the long-lived heap has grown by a quarter since the last
one. A crowd of dashboards opening at once grows the heap fast: in ``make bench``'s
connect storm full collections came every few seconds, each a stall of the event loop
and the tail of the connected dashboards' latency (docs/performance.md, "What made the
storm fit", has the figures).

Two changes, applied once the application is loaded and before the first connection:

* ``gc.freeze()``: what is alive then (Django, the URL conf, the models, Channels,
  Twisted) lives as long as the process, so no collection scans it again. Frozen
  objects are still freed by reference counting.
* a young-generation threshold of ``TICKER_GC_THRESHOLD0`` (7,000 instead of CPython's
  700): a connection's objects are long-lived, so the young collections that promote
  them, and the full collections that follow every tenth of the older ones, become ten
  times rarer.

Steady streaming allocates few lasting objects (no full collection in minutes of
1,000 dashboards), so garbage cycles left by closed connections are still collected,
only later; ``make soak`` checks that memory levels off.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def tune(threshold0: int) -> None:
    """Freeze what is alive now and set the young generation's threshold (0: CPython's own)."""
    gc.collect()  # nothing dead gets frozen with the living
    gc.freeze()
    if threshold0 > 0:
        _, threshold1, threshold2 = gc.get_threshold()
        gc.set_threshold(threshold0, threshold1, threshold2)
    logger.info("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
