"""Listening sockets that a replacement web process can share while the old one drains.

Daphne's ``-b HOST -p PORT`` becomes a Twisted ``tcp:`` endpoint, which binds without
``SO_REUSEPORT``: a second process on the same port fails, so a restart leaves the port
closed from the moment the old process stops listening until the new one has started
(about 3 s of refused connections behind the balancer). Bound here with ``SO_REUSEPORT``
and handed to Twisted as an adopted descriptor, the port can be held by the process being
replaced and by its successor (``ticker/successor.py``) at once: the kernel spreads new
connections over both until the old one stops listening at the start of its drain.

Linux lets only processes of the same user share a port this way, so another user's
process cannot take connections from it.
"""

from __future__ import annotations

import re
import socket

# How Daphne describes ``-b HOST -p PORT`` (daphne.endpoints), colons of an IPv6 host escaped.
TCP_ENDPOINT = re.compile(r"^tcp:port=(?P<port>\d+):interface=(?P<host>.+)$")


def shared_endpoint(description: str, backlog: int) -> str:
    """``description`` as an adopted ``SO_REUSEPORT`` socket (``fd:...``), or unchanged."""
    match = TCP_ENDPOINT.match(description)
    # IPv6 stays Twisted's own: the "fd" endpoint's parser cannot be told the family.
    if match is None or ":" in match["host"] or not hasattr(socket, "SO_REUSEPORT"):
        return description
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((match["host"], int(match["port"])))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    # Twisted adopts the descriptor and closes it itself: the socket object lets go of it.
    fileno = sock.detach()
    return f"fd:fileno={fileno}"
