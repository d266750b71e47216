"""The overview's row cache (issue 18, the page at 1,000 objects): a row is derived and rendered again only
when its object's resourceVersion or its model's drift share changes; the HTML is the page's, escaped."""

from __future__ import annotations

import copy
from urllib.parse import quote

import pytest
from fastapi.templating import Jinja2Templates

from modelops.console.app import HERE, KIND_TITLES
from modelops.console.overview import Overview, page
from modelops.desired.approval_message import fmt, fmt_delta
from tests.fixtures.console import md_status_awaiting, model_deployment

pytestmark = pytest.mark.unit


def env():  # type: ignore[no-untyped-def]
    tpl = Jinja2Templates(directory=str(HERE / "templates"))
    tpl.env.globals.update(fmt=fmt, fmt_delta=fmt_delta, kind_titles=KIND_TITLES, quote=quote)
    return tpl.env


def objs(n: int) -> list[dict]:
    out = []
    for i in range(n):
        o = model_deployment(f"md-{i:03d}", "churn" if i % 2 else "other")
        o["metadata"].update(namespace=f"ns-{i % 3}", resourceVersion=str(100 + i))
        if i % 10 == 0:
            o["status"] = md_status_awaiting("2")
        out.append(o)
    return out


def test_rows_are_rendered_once_per_object_version_and_drift_share() -> None:
    ov = Overview(env())
    mds = objs(50)
    md, rs = ov.sorted_rows(None, mds, [], {"churn": 0.25})
    assert ov.md.rendered == 50 and rs == []
    assert [r["pending"] for r, _h in md[:5]] == [["2"]] * 5  # awaiting approval first
    ov.sorted_rows(None, mds, [], {"churn": 0.25})
    assert ov.md.rendered == 50  # nothing changed: nothing rendered
    changed = copy.deepcopy(mds)
    changed[7]["metadata"]["resourceVersion"] = "999"
    changed[7]["status"] = {"phase": "Progressing"}
    md, _ = ov.sorted_rows(None, changed, [], {"churn": 0.25})
    assert ov.md.rendered == 51
    assert "Progressing" in next(h for r, h in md if r["name"] == "md-007")
    ov.sorted_rows(None, changed, [], {"churn": 0.5})  # the drift share of 'churn' moved: its 25 rows only
    assert ov.md.rendered == 76
    md, _ = ov.sorted_rows(None, changed[:10], [], {"churn": 0.5})  # deleted objects leave the cache
    assert len(md) == 10 and len(ov.md.rows) == 10
    # a key that holds reuses the sorted rows without looking at the objects
    ov.sorted_rows(("k",), changed[:10], [], {"churn": 0.5})
    assert len(ov.sorted_rows(("k",), [], [], {})[0]) == 10


def test_row_html_is_escaped_and_pages_filter_by_namespace() -> None:
    ov = Overview(env())
    mds = objs(30)
    mds[3]["spec"]["model"]["name"] = "<script>x</script>"
    md, _ = ov.sorted_rows(None, mds, [], {})
    html = next(h for r, h in md if r["name"] == "md-003")
    assert "<script>" not in html and "&lt;script&gt;" in html
    p = page(md, "ns-1", 1, 4)
    assert p["total"] == 10 and p["pages"] == 3 and len(p["rows"]) == 4
    assert all(r["namespace"] == "ns-1" for r in p["rows"])
    assert str(p["html"]).count("<tr ") == 4 and p["awaiting"] == sum(1 for r, _h in md
                                                                         if r["namespace"] == "ns-1" and r["pending"])
