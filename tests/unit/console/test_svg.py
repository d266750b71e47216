"""The server-rendered drift plot."""

from __future__ import annotations

import pytest

from modelops.console.svg import lines

pytestmark = pytest.mark.unit


def test_lines_marks_young_series_and_escapes_names() -> None:
    out = lines({"<b>tenure": [(0.0, 1.5)], "age": [(0.0, 0.1), (60.0, 0.2)]}, threshold=1.0, y_label="ratio")
    assert out.count("<polyline") == 2 and out.count("<circle") == 3
    assert "&lt;b&gt;tenure" in out and "<b>" not in out
    assert 'stroke-dasharray="4 3"' in out  # the threshold line


def test_no_data() -> None:
    assert "no data" in lines({"a": []})
