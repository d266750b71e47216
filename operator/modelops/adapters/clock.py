"""The operator's clock (both kinds read it), with a TEST-ONLY override (MODELOPS_TEST_CLOCK_FILE).

Cron firings must be tested at the right minute without waiting for it. When the setting names a file,
every reading of the clock reads it: `{"now": "2030-01-01T01:59:50Z"}` freezes time there,
`{"offsetSeconds": 3600}` runs it that far ahead of the real clock; a missing, empty or unreadable file
means real time. With the override active, a schedule counts as created when the operator first sees it
(the creation timestamp is in real time). Never set this in production: the chart does not expose it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path


class Clock:
    def __init__(self, test_clock_file: str = "") -> None:
        self.path = Path(test_clock_file) if test_clock_file else None

    @property
    def overridden(self) -> bool:
        return self.path is not None

    def now(self) -> datetime:
        real = datetime.now(UTC)
        if self.path is None:
            return real
        try:
            text = self.path.read_text().strip()
            if not text:
                return real
            data = json.loads(text)
            if data.get("now"):
                return datetime.fromisoformat(str(data["now"]).replace("Z", "+00:00")).astimezone(UTC)
            return real + timedelta(seconds=float(data.get("offsetSeconds", 0)))
        except (OSError, ValueError, AttributeError, TypeError):
            return real
