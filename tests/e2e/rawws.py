"""A minimal raw WebSocket client for hostile-input tests: any frame, any bytes, reading only on demand.

Real clients cannot send invalid UTF-8 in a text frame or stop reading at the socket
level; this one can.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE = 0x0, 0x1, 0x2, 0x8


class RawWebSocket:
    """One TCP connection, upgraded by hand."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str], *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            response += chunk
        self.status = int(response.split(b" ", 2)[1])
        self.buffer = b""

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        header = bytes([(0x80 if fin else 0) | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def read_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The next frame (opcode, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            return None
        self.buffer = data[offset + length :]
        return opcode, data[offset : offset + length]

    def close_code(self, timeout: float) -> int | None:
        """Read until a close frame (its code) or EOF (None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.read_frame(deadline - time.monotonic())
            if frame is None:
                return None
            opcode, payload = frame
            if opcode == OP_CLOSE:
                self.last_close = payload
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        raise TimeoutError("no close within the deadline")

    def close(self) -> None:
        self.sock.close()
