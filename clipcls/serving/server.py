"""The uvicorn server around the app, with the limits a server on an open port needs:
at most `max_concurrency` connections and requests at once (uvicorn answers more with 503), a
connection that has not sent a complete request head within `header_timeout_s` is closed
(slow-loris), and a shutdown (SIGTERM, Ctrl-C) waits at most `shutdown_timeout_s` for requests in
flight before cancelling them.

uvicorn has a keep-alive timeout between requests but none for a request head that never
finishes, so `header_timeout_protocol` adds one to its h11 protocol class (uvicorn's `http`
option takes a protocol class for this).
"""

from __future__ import annotations

import asyncio
from typing import Any


def header_timeout_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head is still incomplete
    `header_timeout_s` after the connection opened, or after the first bytes of a later request."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # a request head has begun but is not complete
                self.arm_header_timer()
            else:
                self.disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self.disarm_header_timer()
            super().connection_lost(exc)

        def arm_header_timer(self) -> None:
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(header_timeout_s, self.header_timed_out)

        def disarm_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def header_timed_out(self) -> None:
            self.header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.logger.info("closing a connection that sent no complete request head in %g s", header_timeout_s)
                self.transport.close()

    return HeaderTimeoutH11Protocol


def server_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_concurrency: int = 256,
    header_timeout_s: float = 10.0,
    shutdown_timeout_s: float = 10.0,
) -> Any:
    """The uvicorn.Config that `clipcls serve` runs `app` with."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(header_timeout_s),
        # uvicorn counts the connection being answered: N + 1 lets N be served and refuses one more
        limit_concurrency=max_concurrency + 1,
        timeout_graceful_shutdown=shutdown_timeout_s,
        log_level="warning",
    )
