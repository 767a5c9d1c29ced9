"""The web process: Daphne's own command line (same options), with two policies wired in.

* slow clients (``ticker/slow_clients.py``): every WebSocket connection is a
  ``BoundedWebSocketProtocol``, which closes a client that stops reading with 4408
  instead of buffering for it without limit;
* proxy headers (``ticker/proxy_headers.py``): ``X-Forwarded-*`` are believed from
  ``TRUSTED_PROXIES`` alone, read without ``--proxy-headers`` when some are set, and
  removed from every other peer's requests before the application sees them;
* a graceful stop (``ticker/drain.py``): SIGTERM stops accepting, closes every stream with
  1012 so that it reconnects elsewhere, and exits when drained (``TICKER_DRAIN_*``);
* a replacement in place (``ticker/successor.py``, ``ticker/listen.py``): the port is
  bound with ``SO_REUSEPORT``, and SIGHUP starts a successor on it that retires this one.

``main`` configures them from the settings, loads the application, tunes the garbage
collector (``ticker/gc_tuning.py``) and runs Daphne's CLI with ``BoundedServer``.

Usage: ``python -m ticker.server [daphne options] ticker.asgi:application``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from functools import partial
from typing import Any

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet import reactor

from ticker import gc_tuning, proxy_headers
from ticker.drain import Drain
from ticker.health import QuietProbesAccessLog
from ticker.inbox import Inbox
from ticker.listen import shared_endpoint
from ticker.slow_clients import BoundedWebSocketProtocol
from ticker.successor import Successor, retire_predecessor

# Twisted listens with a backlog of 50: a crowd of clients reconnecting at once (after a
# deploy) overflows it and handshakes fail before Daphne sees them.
LISTEN_BACKLOG = 2048


class BoundedServer(Server):
    """Daphne's server, building WebSocket connections with ``BoundedWebSocketProtocol``,
    draining on SIGTERM (``ticker/drain.py``) and replaced in place on SIGHUP."""

    drain_seconds = 10.0
    drain_spread_seconds = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listening_ports: list[Any] = []
        self.drain = Drain(self, reactor, bound_seconds=self.drain_seconds, spread_seconds=self.drain_spread_seconds)
        self.successor = Successor(reactor)
        if type(self.action_logger) is AccessLogGenerator:
            # The balancer's probes, once a second per process, are not requests worth a line.
            self.action_logger = QuietProbesAccessLog(self.action_logger.stream)
        proxy_headers.read_without_flag(self)

    def run(self) -> None:
        # Bound here, where a failure is Daphne's start failing: shared with a successor.
        endpoints = [shared_endpoint(e, LISTEN_BACKLOG) for e in self.endpoints]
        self.endpoints = [
            f"{e}:backlog={LISTEN_BACKLOG}" if e.startswith("tcp:") and "backlog=" not in e else e for e in endpoints
        ]
        if self.signal_handlers:
            # After Twisted's own handlers, which are installed as the reactor starts.
            reactor.callWhenRunning(self.drain.install)
            reactor.callWhenRunning(self.successor.install)
        super().run()

    def listen_success(self, port: Any) -> None:
        # Kept so that a drain can stop accepting (Daphne keeps only the addresses).
        self.listening_ports.append(port)
        super().listen_success(port)
        if len(self.listening_ports) == len(self.endpoints):
            retire_predecessor()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        # Every HTTP request and WebSocket handshake passes here with its scope, before the
        # application exists: the one place where both the peer and the headers are known.
        proxy_headers.screen(scope, proxy_headers.peer_host(protocol), self.root_path)
        if scope.get("type") != "websocket":
            return super().create_application(protocol, scope)
        # A WebSocket lives for hours: its input queue is an ``Inbox``, not an asyncio.Queue.
        # Otherwise as Daphne does it: one application per protocol, run as a task that
        # Daphne's application checker watches, and nothing run for a protocol already gone.
        details = self.connections.get(protocol)
        if details is None:
            return None
        assert "application_instance" not in details
        inbox = Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(scope=scope, receive=inbox.get, send=partial(self.handle_reply, protocol))
        details["application_instance"] = asyncio.ensure_future(instance)
        return inbox

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # Daphne creates its WebSocket factory inside run(); swap the protocol as it does.
        factory.protocol = BoundedWebSocketProtocol
        self._ws_factory = factory


class BoundedCommandLineInterface(CommandLineInterface):
    server_class = BoundedServer


def configure_from_settings() -> None:
    """Django, the Redis requirements, and both policies' settings (Daphne's parser included)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticker.settings")
    import django
    from django.conf import settings

    django.setup()
    from dashboard.market.client import sync_redis
    from dashboard.market.redis_requirements import enforce

    enforce(sync_redis())

    proxy_headers.install(settings.TRUSTED_PROXIES)
    BoundedWebSocketProtocol.slow_after = settings.TICKER["SLOW_CLIENT_SECONDS"]
    BoundedWebSocketProtocol.max_outbound_bytes = settings.TICKER["MAX_OUTBOUND_BYTES"]
    BoundedServer.drain_seconds = settings.TICKER["DRAIN_SECONDS"]
    BoundedServer.drain_spread_seconds = settings.TICKER["DRAIN_SPREAD_MS"] / 1000


def main(argv: list[str] | None = None) -> None:
    configure_from_settings()
    from django.conf import settings

    # The application is loaded before the collector is tuned, so that it is frozen with
    # the rest of what lives as long as the process (Daphne then finds it imported).
    importlib.import_module("ticker.asgi")
    gc_tuning.tune(settings.TICKER["GC_THRESHOLD0"])
    BoundedCommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
