"""The exporter's HTTP server protocol: uvicorn (uvloop + httptools) with one write per response.

The implementation is shared with the model server and lives in `modelops.httpio`; this module keeps the
exporter's import path.
"""

from __future__ import annotations

from modelops.httpio import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport

__all__ = ["FLUSH_BYTES", "CoalescingHttpToolsProtocol", "CoalescingTransport"]
