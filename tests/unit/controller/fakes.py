"""Fake adapters for component tests of the controller runtime: an in-memory API server (resourceVersions,
merge-patched status, Events by name, Jobs, Leases), an MLflow registry and a Prometheus."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from modelops.adapters.kube import Conflict, KubeError
from modelops.adapters.registry import ModelVersion, RegistryError
from modelops.api.types import Buckets, Sample
from modelops.controller.budget import Budget
from modelops.controller.clients import Clients
from modelops.controller.runtime import Runtime
from modelops.settings import OperatorSettings


def apply_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


class Crash(BaseException):
    """The process died here (not an Exception: nothing in the operator catches it)."""


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name)
        self.events: dict[str, dict[str, Any]] = {}
        self.rv = itertools.count(100)
        self.status_writers: list[str] = []
        self.fail_create: dict[str, KubeError] = {}  # kind -> error
        self.crash_on: set[str] = set()  # "event", "patch_status"
        self.config: dict[tuple[str, str, str], str] = {}
        self.unserved: set[str] = set()  # "group/version" the API server does not serve
        self.unready_services: set[str] = set()  # Services without a ready endpoint
        self.clock: Any = None  # the runtime's clock: the time of an apply in managedFields

    # helpers for tests
    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        obj["metadata"].setdefault("uid", f"uid-{obj['metadata']['name']}")
        obj["metadata"].setdefault("generation", 1)
        self.objects[(plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def obj(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(plural, ns, name)])

    def events_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ev in self.events.values():
            out[ev["reason"]] = out.get(ev["reason"], 0) + 1
        return out

    # the adapter's interface
    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def patch_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any], resource_version: str | None,
                     field_manager: str = "modelops") -> dict[str, Any]:
        if "patch_status" in self.crash_on:
            raise Crash("patch_status")
        obj = self.objects.get((plural, namespace, name))
        if obj is None or (resource_version and obj["metadata"]["resourceVersion"] != resource_version):
            raise Conflict(409, "changed")
        obj["status"] = apply_merge_patch(obj.get("status") or {}, dict(status))
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.status_writers.append(field_manager)
        return copy.deepcopy(obj)

    def apply(self, group: str, version: str, plural: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        old = self.objects.get((plural, meta["namespace"], meta["name"])) or {}
        obj = {**copy.deepcopy(dict(manifest)), "status": old.get("status") or {}}
        obj["metadata"] = {**copy.deepcopy(dict(meta)), "resourceVersion": str(next(self.rv)), "uid": "isvc-uid"}
        obj["metadata"]["generation"] = int((old.get("metadata") or {}).get("generation") or 0) + 1
        if self.clock is not None:
            obj["metadata"]["managedFields"] = [{"manager": "modelops", "operation": "Apply",
                                                 "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}]
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def config_map_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.config.get((namespace, name, key))

    def accepts_field(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def group_version_served(self, group: str, version: str) -> bool:
        return f"{group}/{version}" not in self.unserved

    def service_ready(self, namespace: str, service: str) -> bool:
        return service not in self.unready_services

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get(("services", namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def apply_service(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self.apply("", "v1", "services", manifest)

    def delete_service(self, namespace: str, name: str) -> None:
        self.objects.pop(("services", namespace, name), None)

    def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.objects.get(("secrets", namespace, name))
        if secret is None:
            raise KubeError(404, f"secrets {name} not found")
        return dict(secret["data"])

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = self.objects.get(("secrets", namespace, name))
        return (secret or {}).get("data", {}).get(key)

    def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, *, key: str = "",
              now: datetime | None = None, instance: str = "modelops") -> bool:
        from modelops.adapters.kube import event_name

        if "event" in self.crash_on:
            raise Crash("event")
        meta = involved["metadata"]
        name = event_name(meta["name"], f"{meta.get('uid')}/{key}") if key else f"{meta['name']}.{len(self.events)}"
        if name in self.events:
            return False
        self.events[name] = {"type": type_, "reason": reason, "message": message, "instance": instance,
                             "source": {"component": "modelops"}, "involved": meta["name"]}
        if "event-after" in self.crash_on:
            raise Crash("after posting the event")
        return True

    def list_jobs_and_pods(self, namespace: str, selector: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        jobs = [copy.deepcopy(o) for (p, ns, _), o in self.objects.items() if p == "jobs" and ns == namespace]
        return jobs, []

    def create_if_absent(self, manifest: Mapping[str, Any]) -> bool:
        if manifest["kind"] in self.fail_create:
            raise self.fail_create[manifest["kind"]]
        plural = {"Job": "jobs", "ConfigMap": "configmaps"}[manifest["kind"]]
        key = (plural, manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if key in self.objects:
            return False
        self.objects[key] = copy.deepcopy(dict(manifest))
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        self.objects.pop(("jobs", namespace, name), None)
        self.objects.pop(("configmaps", namespace, name), None)

    # Leases
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("", "", "leases", namespace, name)

    def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        if ("leases", namespace, name) in self.objects:
            raise Conflict(409, "exists")
        return self.put("leases", {"metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)})

    def replace_lease(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
        meta = lease["metadata"]
        cur = self.objects[("leases", meta["namespace"], meta["name"])]
        if cur["metadata"]["resourceVersion"] != meta["resourceVersion"]:
            raise Conflict(409, "changed")
        cur["spec"] = dict(spec)
        cur["metadata"]["resourceVersion"] = str(next(self.rv))
        return copy.deepcopy(cur)


class FakeRegistry:
    """MLflow: versions with tags, aliases; `fail` makes the named operations raise RegistryError."""

    def __init__(self, tracking_uri: str = "http://mlflow") -> None:
        self.tracking_uri = tracking_uri
        self.versions: dict[str, dict[str, str]] = {}  # version -> tags
        self.aliases: dict[str, str] = {}
        self.fail: dict[str, RegistryError] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.username: str | None = None

    def _check(self, op: str) -> None:
        self.calls.append((op,))
        if op in self.fail:
            raise self.fail[op]

    def _mv(self, name: str, version: str) -> ModelVersion:
        return ModelVersion(name=name, version=version, run_id=f"run{version}", tags=dict(self.versions[version]))

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        self._check("get_alias")
        v = self.aliases.get(alias)
        return self._mv(name, v) if v else None

    def get_version(self, name: str, version: str) -> ModelVersion | None:
        self._check("get_version")
        return self._mv(name, version) if version in self.versions else None

    def storage_uri(self, mv: ModelVersion) -> str:
        return f"s3://models/{mv.name}/{mv.version}"

    def set_alias(self, name: str, alias: str, version: str, if_version: str | None = None) -> bool:
        self._check("set_alias")
        self.calls.append(("set_alias", alias, version, if_version))
        cur = self.aliases.get(alias)
        if if_version is not None and cur not in (if_version, version):
            return False
        self.aliases[alias] = version
        return True

    def delete_alias(self, name: str, alias: str, if_version: str | None = None) -> bool:
        self._check("delete_alias")
        self.calls.append(("delete_alias", alias, if_version))
        if if_version is not None and self.aliases.get(alias) != if_version:
            return False
        return self.aliases.pop(alias, None) is not None

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._check("set_version_tag")
        self.calls.append(("set_version_tag", version, key, value))
        self.versions.setdefault(version, {})[key] = value


class FakePrometheus:
    def __init__(self, value: float | None = 0.01) -> None:
        self.value = value
        self.queries: list[str] = []

    def query(self, promql: str, timeout: float | None = None) -> Sample:
        self.queries.append(promql)
        return Sample(self.value)

    def query_value(self, promql: str, timeout: float | None = None) -> Sample:
        return self.query(promql, timeout)

    def query_buckets(self, promql: str, timeout: float | None = None) -> Buckets:
        """100 requests, every one at most `value` seconds (no data without a value)."""
        self.queries.append(promql)
        if self.value is None:
            return Buckets()
        return Buckets(((self.value, 100.0), (math.inf, 100.0)))


class FakeClock:
    def __init__(self, now: datetime = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self.t = now
        self.overridden = False

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def make_runtime(kube: FakeKube | None = None, registry: FakeRegistry | None = None,
                 prometheus: FakePrometheus | None = None, notifier: Any = None, **settings: Any) -> tuple[Runtime, FakeKube, FakeRegistry,
                                                                                     FakeClock]:
    kube = kube or FakeKube()
    registry = registry or FakeRegistry()
    prom = prometheus or FakePrometheus()
    clients = Clients(kube,  # type: ignore[arg-type]
                      registry_factory=lambda *a, **k: registry, prometheus_factory=lambda *a, **k: prom,
                      notifier=notifier)
    clock = FakeClock()
    kube.clock = clock
    rt = Runtime(OperatorSettings(**settings), kube=kube, clients=clients, clock=clock)  # type: ignore[arg-type]
    return rt, kube, registry, clock


def budget(seconds: float = 10.0) -> Budget:
    return Budget(seconds)
