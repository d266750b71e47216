"""HTTP/1.1 pieces shared by the drift exporter and the model server: uvicorn's httptools protocol with one write
per response (issue 19). Imports uvicorn and nothing of either runtime (an import-linter contract).

uvicorn writes a response's head and its body with two ``transport.write`` calls; on uvloop each is a
``send`` system call when the socket buffer is empty, so a small event answer costs two system calls and two
wake-ups of the client. The exporter answers thousands of small event POSTs a second on one core: profiled,
those two writes were a fifth of its CPU. `CoalescingHttpToolsProtocol` hands uvicorn a transport that gathers
the writes made within one turn of the event loop and sends them together at the end of the turn (at once when
they pass `FLUSH_BYTES`, and before a close), so a response is one system call. Flow control is untouched: the
real transport still calls the protocol's pause/resume_writing. A protocol that already has a whole response in
one buffer sends it with `write_now` (behind anything gathered before it, in order).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: gathered bytes beyond which a write goes out at once instead of at the end of the loop turn
FLUSH_BYTES = 64 << 10


class CoalescingTransport:
    """A transport that delays writes to the end of the current event-loop turn and sends them as one."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def write_now(self, data: bytes) -> None:
        """Send `data` at once, after whatever this turn gathered (one system call either way)."""
        if self._pending:
            self._pending.append(data)
            self._size += len(data)
            self.flush()
        elif not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:  # is_closing, abort, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `CoalescingTransport` (pass as ``uvicorn.run(..., http=...)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
