"""Socket tuning shared by the terminal's and the gateway's MQTT clients."""

from __future__ import annotations

import contextlib
import socket
from typing import Any


def no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY on a broker link (paho leaves Nagle on), as paho's ``on_socket_open`` callback. MQTT sends small
    packets in both directions: with Nagle a PUBLISH (a result, a receipt) waits for the peer's delayed ACK of the
    previous small packet, 40 ms (measured on the terminal: enqueue -> PUBACK median 42 ms with receipts, 3 ms
    without)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: nothing to tune
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
