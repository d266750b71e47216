"""The watch cache keeps each object compressed (issue 15: operator RSS at 10,000 objects)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from modelops.api.types import ModelRef, ServingPlan
from modelops.controller.cache import WatchCache, _Entry
from modelops.desired.inference_service import Defaults, inference_service

pytestmark = pytest.mark.unit


def _isvc(i: int) -> dict:
    spec = {"model": {"storageUri": f"s3://bench/m{i}/v3"},
            "serving": {"runtime": "kserve", "modelFormat": "sklearn", "deploymentMode": "Standard"}}
    obj = inference_service(name=f"m{i:05d}", namespace="team-a", uid=f"uid-{i}", spec=spec,
                            plan=ServingPlan(ModelRef(f"s3://bench/m{i}/v3")), mode="Standard",
                            defaults=Defaults("modelops/model-server:0.1.0", "http://drift/events"))
    obj["metadata"].update({"resourceVersion": str(100 + i), "generation": 2,
                            "managedFields": [{"manager": "modelops", "fieldsV1": {"f:spec": {}}}]})
    obj["status"] = {"observedGeneration": 2, "url": f"http://m{i}.team-a.svc", "conditions": [
        {"type": t, "status": "True", "lastTransitionTime": datetime(2030, 1, 1, tzinfo=UTC).isoformat()}
        for t in ("IngressReady", "PredictorReady", "Ready")]}
    return obj


def test_an_entry_is_smaller_than_the_objects_compact_json_and_reads_back_equal() -> None:
    obj = _isvc(7)
    lean = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    compact = len(json.dumps(lean, separators=(",", ":")).encode())
    entry = _Entry(obj)
    assert len(entry.data) < 0.6 * compact, (len(entry.data), compact)  # was the JSON itself
    assert entry.obj() == lean and entry.rv == 107
    cache = WatchCache()
    cache.remember("InferenceService", ("team-a", "m00007"), obj)
    got = cache.get("InferenceService", ("team-a", "m00007"))
    assert got == lean
    got["status"]["url"] = "changed"  # a reader's copy is its own
    assert cache.get("InferenceService", ("team-a", "m00007")) == lean


def test_non_ascii_and_kopf_views_survive_the_round_trip() -> None:
    from collections import UserDict

    obj = {"metadata": {"name": "é-ü", "resourceVersion": "3", "annotations": UserDict({"note": "naïve ✓"})},
           "spec": {"items": (1, 2)}}
    cache = WatchCache()
    cache.remember("X", ("ns", "é-ü"), obj)
    assert cache.get("X", ("ns", "é-ü")) == {"metadata": {"name": "é-ü", "resourceVersion": "3",
                                                          "annotations": {"note": "naïve ✓"}},
                                             "spec": {"items": [1, 2]}}
