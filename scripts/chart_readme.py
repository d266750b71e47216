#!/usr/bin/env python3
"""Generate charts/modelops/README.md from values.yaml: the comment block above each key is its documentation.

    python scripts/chart_readme.py            # rewrite README.md
    python scripts/chart_readme.py --check    # exit 1 if README.md is not current (tests/charts runs this)

The README has a hand-written head (README.md.gotmpl, everything but the values table) and a generated
values table, so prose and reference never drift apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "modelops"
MARKER = "{{ VALUES_TABLE }}"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Value:
    path: str
    default: object
    description: str


def parse_values(path: Path = CHART / "values.yaml") -> list[Value]:
    """Every key of values.yaml (leaves and sections) with its default and the comment block above it."""
    text = path.read_text()
    data = yaml.safe_load(text)
    out: list[Value] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comment = []
            continue
        m = _KEY.match(line)
        if not m:
            comment = []
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        keys = [k for _, k in stack]
        node: object = data
        for k in keys:
            node = node[k]  # type: ignore[index]
        out.append(Value(".".join(keys), node, " ".join(comment)))
        comment = []
    return out


def _fmt(default: object) -> str:
    if isinstance(default, dict) and default:
        return "see below"
    return "`" + json.dumps(default) + "`"


def values_table(values: list[Value]) -> str:
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for v in values:
        desc = v.description.replace("|", "\\|")
        rows.append(f"| `{v.path}` | {_fmt(v.default)} | {desc} |")
    return "\n".join(rows)


def render(chart: Path = CHART) -> str:
    head = (chart / "README.md.gotmpl").read_text()
    chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    head = head.replace("{{ VERSION }}", str(chart_meta["version"])).replace(
        "{{ APP_VERSION }}", str(chart_meta["appVersion"]))
    return head.replace(MARKER, values_table(parse_values(chart / "values.yaml")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if README.md is not current")
    args = ap.parse_args()
    want = render()
    readme = CHART / "README.md"
    if args.check:
        if not readme.exists() or readme.read_text() != want:
            print(f"{readme} is stale; run: python scripts/chart_readme.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(want)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
