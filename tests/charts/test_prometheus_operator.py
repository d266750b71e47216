"""The chart's monitoring objects through the real Prometheus Operator (issue 14 item 1).

The operator built from its Go module (`modelops cluster build-serving prometheus-operator`) runs as a host
process against the cluster tier's control plane (no node: the Prometheus Pods it asks for never start, but the
configuration it generates for them is the thing under test). A `Prometheus` selects the chart's ServiceMonitor,
PodMonitor and PrometheusRule by the label `monitoring.additionalLabels` puts on them (as kube-prometheus-stack
selects `release: <name>`); the test reads back the scrape configuration and the rule files the operator wrote.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart import render
from tests.fixtures.cluster import Kube
from tests.fixtures.procs import free_port, http_ok, start, stop, wait_until

pytestmark = pytest.mark.cluster

SELECT = {"modelops.dev/prometheus": "chart-test"}
PROMETHEUS = "chart"


@pytest.fixture
def prometheus_operator(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The built operator as a host process, scoped to the test's namespace, its CRDs server-side applied."""
    from modelops_dev.cluster import versions
    from modelops_dev.cluster.build import serving_ready
    from modelops_dev.e2e import kserve, prometheus_operator

    if not serving_ready("prometheus-operator"):
        pytest.fail("the Prometheus Operator is not built; run: modelops cluster build-serving prometheus-operator",
                    pytrace=False)
    cache = versions.serving_dir("prometheus-operator")
    check, run = kserve.run_kubectl(str(kube.bin_dir / "kubectl"), kube.env())
    installer = kserve.Installer(check, run, progress=lambda _m: None)
    port = free_port()
    log = tmp_path / "prometheus-operator.log"
    procs: list[subprocess.Popen[bytes]] = []

    def start_host() -> None:
        argv, env = prometheus_operator.host_operator(cache / "bin" / "operator", Path(kube.kubeconfig), port,
                                                      namespaces=[namespace])
        procs.append(start(argv, log, env=env))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 120, "prometheus-operator /healthz",
                   proc=procs[0], log=log)

    try:
        prometheus_operator.install(installer, cache,
                                    prometheus_operator.Options(namespace=f"{namespace}-po", operator="host"),
                                    start_host_operator=start_host)
        yield procs[0]
    finally:
        for p in procs:
            stop(p)
        kube.kubectl("delete", "namespace", f"{namespace}-po", "--wait=false", check=False)
        if log.exists():
            print(log.read_text(errors="replace")[-4000:])


def _chart_monitoring(namespace: str) -> list[dict[str, Any]]:
    labels = ["monitoring.additionalLabels." + k.replace(".", "\\.") + f"={v}" for k, v in SELECT.items()]
    objs = render(namespace=namespace, api_versions=["monitoring.coreos.com/v1"],
                  sets=[*labels, "driftExporter.enabled=true",
                        "driftExporter.references={churn=models:/churn@champion}"])
    mon = [o for o in objs if o["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
    assert {o["kind"] for o in mon} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}, mon
    return mon


def _relabel(rule: dict[str, Any]) -> dict[str, Any]:
    """A chart relabeling (monitoring.coreos.com/v1 camelCase) in Prometheus' own spelling."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label", "regex": "regex",
            "replacement": "replacement", "action": "action"}
    return {keys[k]: v for k, v in rule.items() if k in keys}


def _in_order(wanted: list[dict[str, Any]], got: list[dict[str, Any]]) -> bool:
    """Whether every wanted relabeling appears in `got`, in the same order (the operator adds its own around)."""
    i = 0
    for rule in got:
        if i < len(wanted) and all(rule.get(k) == v for k, v in wanted[i].items()):
            i += 1
    return i == len(wanted)


def test_operator_turns_the_charts_monitors_and_rules_into_prometheus_configuration(
        kube: Kube, namespace: str, prometheus_operator: subprocess.Popen[bytes]) -> None:
    from modelops_dev.e2e.prometheus_operator import wait_generated

    mon = _chart_monitoring(namespace)
    kube.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-n", namespace, "-f", "-",
                 input=json.dumps({"apiVersion": "v1", "kind": "List", "items": mon}))
    prom = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
            "metadata": {"name": PROMETHEUS, "namespace": namespace},
            "spec": {"replicas": 1, "serviceMonitorSelector": {"matchLabels": SELECT},
                     "podMonitorSelector": {"matchLabels": SELECT}, "ruleSelector": {"matchLabels": SELECT}}}
    kube.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f", "-", input=json.dumps(prom))

    monitors = [o for o in mon if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    expected_jobs = {f"{'serviceMonitor' if o['kind'] == 'ServiceMonitor' else 'podMonitor'}/{namespace}/"
                     f"{o['metadata']['name']}/{i}"
                     for o in monitors
                     for i, _ in enumerate(o["spec"].get("endpoints") or o["spec"].get("podMetricsEndpoints") or [])}
    assert len(expected_jobs) >= 3  # operator + drift exporter ServiceMonitors, model-server PodMonitor

    def has_all_jobs(config: dict[str, Any]) -> bool:
        return expected_jobs <= {j["job_name"] for j in config.get("scrape_configs") or []}

    config = wait_generated(lambda *a: _checked(kube, *a), namespace, PROMETHEUS, has_all_jobs, timeout=180)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == expected_jobs, sorted(jobs)

    # the operator's /metrics: the chart's ServiceMonitor endpoint, honouring the series' own namespace label
    sm = next(o for o in mon if o["kind"] == "ServiceMonitor" and o["metadata"]["name"].endswith("-operator"))
    job = jobs[f"serviceMonitor/{namespace}/{sm['metadata']['name']}/0"]
    ep = sm["spec"]["endpoints"][0]
    assert job["metrics_path"] == ep["path"] == "/metrics"
    assert job["honor_labels"] is True
    assert job["scrape_interval"] == ep["interval"] and job["scrape_timeout"] == ep["scrapeTimeout"]
    assert [c["role"] for c in job["kubernetes_sd_configs"]] in (["endpoints"], ["endpointslice"])
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    for key, value in sm["spec"]["selector"]["matchLabels"].items():
        label = "__meta_kubernetes_service_label_" + "".join(c if c.isalnum() else "_" for c in key)
        assert any(label in r.get("source_labels", []) and r.get("regex") in (f"({value});true", value)
                   for r in keeps), (key, keeps)
    assert any(r.get("regex") == ep["port"] for r in keeps), keeps

    # the model servers: the PodMonitor's label convention (namespace, pod, isvc; version from the server)
    pm = next(o for o in mon if o["kind"] == "PodMonitor")
    job = jobs[f"podMonitor/{namespace}/{pm['metadata']['name']}/0"]
    pme = pm["spec"]["podMetricsEndpoints"][0]
    assert job["metrics_path"] == "/metrics" and job["scrape_interval"] == pme["interval"]
    assert [c["role"] for c in job["kubernetes_sd_configs"]] == ["pod"]
    relabels = job["relabel_configs"]
    assert any(r.get("action") == "keep" and r.get("source_labels") == ["__meta_kubernetes_pod_container_port_number"]
               and str(r.get("regex")) == str(pme["portNumber"]) for r in relabels), json.dumps(relabels)
    assert any(r.get("action") == "keep" and
               "__meta_kubernetes_pod_labelpresent_serving_kserve_io_inferenceservice" in r.get("source_labels", [])
               for r in relabels), json.dumps(relabels)
    wanted = [_relabel(r) for r in pme["relabelings"]]
    assert {w.get("target_label") for w in wanted} >= {"namespace", "pod", "isvc"}
    assert _in_order(wanted, relabels), json.dumps([wanted, relabels])

    # the rule files: every alert and recording rule of the chart's PrometheusRule, accepted by the operator
    rule = next(o for o in mon if o["kind"] == "PrometheusRule")
    want_rules = sorted(r.get("alert") or r["record"] for g in rule["spec"]["groups"] for r in g["rules"])
    cms = json.loads(kube.kubectl("get", "configmap", "-n", namespace,
                                  "-l", f"prometheus-name={PROMETHEUS}", "-o", "json").stdout)["items"]
    files = {k: yaml.safe_load(v) for cm in cms for k, v in (cm.get("data") or {}).items()}
    assert [k for k in files if k.startswith(f"{namespace}-{rule['metadata']['name']}-")], sorted(files)
    got_rules = sorted(r.get("alert") or r["record"] for f in files.values() for g in f["groups"] for r in g["rules"])
    assert got_rules == want_rules
    assert any(r.get("alert") for g in rule["spec"]["groups"] for r in g["rules"])
    assert config["rule_files"], config.get("rule_files")


def _checked(kube: Kube, *args: str) -> str:
    proc = kube.kubectl(*args, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return proc.stdout
