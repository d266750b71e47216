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


def test_overview_pages_list_awaiting_first() -> None:
    from modelops.console.views import page_of

    rows = [{"namespace": "b", "name": f"m{i:03d}", "pending": ["2"] if i % 50 == 7 else []} for i in range(250)]
    first = page_of(rows, 1, 100)
    assert first["pages"] == 3 and first["total"] == 250 and first["awaiting"] == 5
    assert [r["name"] for r in first["rows"][:5]] == ["m007", "m057", "m107", "m157", "m207"]
    assert first["rows"][5]["name"] == "m000"
    assert len(page_of(rows, 3, 100)["rows"]) == 50 and page_of(rows, 4, 100)["rows"] == []
