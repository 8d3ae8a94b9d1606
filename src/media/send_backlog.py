"""How much outbound audio a carrier has not taken: bytes waiting in our write buffer and
in the kernel's send queue of the socket, in seconds at the wire rate, plus how long a send
has been blocked. A carrier that stops reading shows as a backlog that only grows."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import struct
import termios


def unsent_seconds(
    transport: asyncio.BaseTransport | None, wire_bytes_per_s: float, blocked_s: float
) -> float:
    if wire_bytes_per_s <= 0:
        return 0.0
    pending = 0
    if transport is not None:
        with contextlib.suppress(Exception):
            pending += int(transport.get_write_buffer_size())  # type: ignore[attr-defined]
        pending += kernel_unsent_bytes(transport)
    return pending / wire_bytes_per_s + blocked_s


def kernel_unsent_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes in the kernel's send queue of the connection's socket (Linux; 0 elsewhere)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    except (OSError, AttributeError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])
