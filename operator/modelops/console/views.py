"""Objects (`kubectl get -o json` shapes) -> what the pages show (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelops.desired.approval_link import pending_approvals


def model_of(kind: str, obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec") or {}
    if kind == "retrainschedules":
        return str((spec.get("training") or {}).get("modelName") or "")
    return str((spec.get("model") or {}).get("name") or (spec.get("model") or {}).get("storageUri") or "")


def md_row(obj: Mapping[str, Any], drift: Mapping[str, float]) -> dict[str, Any]:
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    ro = st.get("rollout") or {}
    model = model_of("modeldeployments", obj)
    pending = pending_approvals("modeldeployments", obj)
    return {"kind": "modeldeployments", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "model": model, "phase": st.get("phase") or "Pending",
            "stable": (st.get("stable") or {}).get("version") or (st.get("stable") or {}).get("storageUri") or "",
            "canary": (st.get("canary") or {}).get("version") or "",
            "weight": ro.get("weight") if ro else None,
            "analysis": (f"{ro.get('lastResult')} at {ro.get('lastAnalysisAt')}" if ro.get("lastResult") else ""),
            "drift": drift.get(model),
            "pending": [p.version for p in pending]}


def rs_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    runs = st.get("runs") or []
    last = runs[0] if runs else {}
    if runs:
        last = max(runs, key=lambda r: str(r.get("startTime") or r.get("scheduledTime") or r.get("id") or ""))
    return {"kind": "retrainschedules", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "model": model_of("retrainschedules", obj), "phase": st.get("phase") or "Pending",
            "lastRun": f"{last.get('id')}: {last.get('state')}" if last else "",
            "lastVersion": str(last.get("version") or ""),
            "pending": [p.version for p in pending_approvals("retrainschedules", obj)]}


def rollout_steps(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rollout's steps with where it stands: done, current (with the last checks), to do."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    steps = (spec.get("rollout") or {}).get("steps") or [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}]
    ro = st.get("rollout") or {}
    current = int(ro.get("step", -1)) if ro else -1
    out = []
    for i, s in enumerate(steps):
        state = "done" if i < current else "current" if i == current else "todo"
        out.append({"n": i + 1, "weight": s.get("weight"), "pause": s.get("pause", "1m"), "state": state,
                    "checks": (ro.get("lastChecks") or []) if state == "current" else []})
    if ro and ro.get("state") == "AwaitingApproval":
        out.append({"n": len(steps) + 1, "weight": 100, "pause": "", "state": "current", "checks": [],
                    "label": "awaiting approval to promote"})
    return out


def metric_thresholds(obj: Mapping[str, Any]) -> dict[str, str]:
    """Each analysis metric's bounds as people read them; a built-in latency quantile whose `max` and
    `maxRatio` are judged by the binomial test (decide/builtin_metrics.py `quantile_test_of`) says so."""
    from modelops.decide.builtin_metrics import quantile_test_of

    out = {}
    for m in ((obj.get("spec") or {}).get("rollout") or {}).get("analysis", {}).get("metrics") or []:
        rng, base = m.get("thresholdRange") or {}, m.get("baseline") or {}
        parts = [f">= {rng['min']}" for _ in [0] if "min" in rng] + [f"<= {rng['max']}" for _ in [0] if "max" in rng]
        parts += [f">= {base['minRatio']} x stable" for _ in [0] if "minRatio" in base]
        parts += [f"<= {base['maxRatio']} x stable" for _ in [0] if "maxRatio" in base]
        if m.get("maxIncrease") is not None:
            parts.append(f"<= stable + {m['maxIncrease']}")
        text = " and ".join(parts) or "-"
        test = quantile_test_of(m)
        if test is not None and ("max" in rng or "maxRatio" in base):
            text += (f" (upper bounds tested: fails when significantly more than {(1 - test[0]) * 100:g}% of the "
                     f"canary's requests are slower, binomial test at alpha {test[1]:g})")
        out[str(m.get("name"))] = text
    return out


def version_rows(versions: Sequence[Mapping[str, Any]], aliases: Sequence[Mapping[str, Any]],
                 history: Sequence[Mapping[str, Any]], decisions: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """MLflow versions, newest first, with their aliases, tags and rollouts."""
    from datetime import UTC, datetime

    by_version: dict[str, list[str]] = {}
    for a in aliases:
        by_version.setdefault(str(a.get("version")), []).append(str(a.get("alias")))
    rows = []
    for v in sorted(versions, key=lambda v: int(v.get("version", 0)), reverse=True):
        ver = str(v.get("version"))
        tags = {t["key"]: t["value"] for t in v.get("tags") or []}
        created = v.get("creation_timestamp")
        rows.append({
            "version": ver, "run_id": v.get("run_id", ""),
            "created": datetime.fromtimestamp(int(created) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if created
            else "", "aliases": by_version.get(ver, []),
            "approval": tags.get("modelops.dev/approval", ""), "rejected": tags.get("modelops.dev/rejected", ""),
            "promoted": tags.get("modelops.dev/promoted-at", ""),
            "rollouts": [h for h in history if str(h.get("version")) == ver],
            "decisions": decisions.get(ver, [])})
    return rows


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows awaiting approval first, then by namespace and name."""
    return sorted(rows, key=lambda r: (not r["pending"], r["namespace"], r["name"]))


def page_of(rows: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    """One page of the rows, awaiting approval first, then by namespace and name."""
    rows = sort_rows(rows)
    pages = max(1, -(-len(rows) // size))
    return {"rows": rows[(page - 1) * size: page * size], "pages": pages, "total": len(rows),
            "awaiting": sum(1 for r in rows if r["pending"])}
