"""What the chart renders, checked without a cluster: lint, scenarios, schema strictness, security, names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart import CHART, REPO, SCENARIOS, helm, pod_specs, render, template_args

pytestmark = pytest.mark.unit

SCENARIO_IDS = [p.name for p in SCENARIOS]
#: The drift exporter is off by default (it needs a reference model to start).
EXPORTER = ("driftExporter.enabled=true", "driftExporter.references={churn=models:/churn@champion}")


def test_an_enabled_drift_exporter_needs_a_reference() -> None:
    proc = helm(*template_args(sets=["driftExporter.enabled=true"]), check=False)
    assert proc.returncode != 0 and "/driftExporter/references" in proc.stderr, proc.stderr


def test_there_are_ci_scenarios() -> None:
    assert len(SCENARIOS) >= 4, SCENARIOS


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=["defaults", *SCENARIO_IDS])
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", "1.37.2"]
    if values:
        args += ["-f", str(values)]
    out = helm(*args)
    assert "0 chart(s) failed" in out.stdout, out.stdout


def test_chart_crds_are_copies_of_manifests_crds() -> None:
    src = {p.name: p.read_bytes() for p in (REPO / "manifests" / "crds").glob("*.yaml")}
    dst = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert src and src == dst, "charts/modelops/crds differs from manifests/crds; run: make sync-crds"


def test_readme_is_generated_from_current_values() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "chart_readme.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_value_has_a_full_sentence_comment() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from chart_readme import parse_values

    values = parse_values(CHART / "values.yaml")
    assert len(values) > 100
    bad = [v.path for v in values if not (v.description[:1].isupper() and v.description.endswith("."))]
    assert not bad, f"values without a full-sentence comment: {bad}"


def _schema_objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key in ("properties",):
        for k, sub in (node.get(key) or {}).items():
            out += _schema_objects(sub, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        out += _schema_objects(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _schema_objects(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_strict_everywhere_and_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = [p or "<root>" for p, n in _schema_objects(schema)
             if n.get("type") == "object" and "additionalProperties" not in n
             and "properties" in n]
    assert not loose, f"schema objects without additionalProperties: {loose}"
    # an object with no declared properties must constrain its values (a typed map), never allow anything
    free = [p for p, n in _schema_objects(schema)
            if n.get("type") == "object" and n.get("additionalProperties") is True]
    assert not free, free

    def leaves(d: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            p = f"{prefix}.{k}" if prefix else k
            out += leaves(v, p) if isinstance(v, dict) and v else [p]
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in leaves(values):
        node = schema
        for part in leaf.split("."):
            props = node.get("properties") or {}
            if part in props:
                node = props[part]
            else:
                assert isinstance(node.get("additionalProperties"), dict), f"{leaf} is not in the schema"
                node = node["additionalProperties"]


@pytest.mark.parametrize("bad", [
    "operator.replicass=1",            # misspelled key
    "driftexporter.enabled=false",     # wrong case
    "operator.image.pullPolicy=Sometimes",
    "operator.leaderElection.enabled=false",  # two replicas (the default) without leader election or peering
    "operator.logFormat=xml",
    "monitoring.prometheusOperator=yes",
    "operator.watchNamespaces[0]=Not_A_Namespace",
    "operator.image.digest=latest",
])
def test_invalid_values_fail_rendering(bad: str) -> None:
    proc = helm(*template_args(sets=[bad]), check=False)
    assert proc.returncode != 0, f"--set {bad} rendered"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_every_pod_is_restricted_and_every_rule_least_privilege(values: Path) -> None:
    objs = render([values], api_versions=["monitoring.coreos.com/v1"])
    pods = list(pod_specs(objs))
    assert pods
    for name, tmpl in pods:
        spec = tmpl["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{name}: no writable /tmp"
            assert c["resources"].get("requests") and c["resources"]["limits"].get("memory"), name
            assert c["image"].count(":") + c["image"].count("@") >= 1 and not c["image"].endswith(":latest")
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
    secret_cluster_roles = set()
    for o in objs:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in o["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{o['kind']}/{o['metadata']['name']}: wildcard in {field}"
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], f"{o['metadata']['name']}: Secrets {rule['verbs']}"
                if o["kind"] == "ClusterRole":
                    secret_cluster_roles.add(o["metadata"]["name"])
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    for o in objs:  # a ClusterRole that can read Secrets is only ever bound per namespace
        if o["kind"] == "ClusterRoleBinding":
            assert o["roleRef"]["name"] not in secret_cluster_roles, o["metadata"]["name"]


def test_only_the_exporter_and_operator_listen_and_only_the_operator_has_a_token() -> None:
    objs = render([CHART / "ci" / "03-full-values.yaml"])
    tokens = {n: t["spec"].get("automountServiceAccountToken") for n, t in pod_specs(objs)}
    assert tokens == {"Deployment/modelops-operator": True, "Deployment/modelops-drift-exporter": False,
                      "Deployment/modelops-mlflow": False}


def test_operator_settings_reach_the_environment() -> None:
    objs = render([CHART / "ci" / "03-full-values.yaml"], namespace="mlops")
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "modelops-operator")
    data = cm["data"]
    assert data["MODELOPS_PEERING"] == "modelops" and data["MODELOPS_NAMESPACES"] == ""
    assert data["MODELOPS_MLFLOW_TRACKING_URI"] == "http://modelops-mlflow.mlops.svc:5000"
    assert data["MODELOPS_DRIFT_EXPORTER_URL"] == "http://modelops-drift-exporter.mlops.svc:8080/events"
    assert data["MODELOPS_TRAINER_IMAGE"] == ("registry.example.com/mlops/modelops/trainer@sha256:"
                                              + "0" * 63 + "1")
    assert data["MODELOPS_SERVER_IMAGE"] == "registry.example.com/mlops/modelops/model-server:0.1.0"
    # every key is a setting the operator knows (a typo here would be ignored silently by pydantic)
    from modelops.settings import OperatorSettings

    known = {f"MODELOPS_{k.upper()}" for k in OperatorSettings.model_fields}
    assert set(data) - known <= {"MODELOPS_KSERVE_NAMESPACE"}, set(data) - known
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "modelops-operator")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-credentials",
                                                                          "key": "token"}
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"


def test_standalone_operator_is_replaced_not_rolled() -> None:
    objs = render(sets=["operator.leaderElection.enabled=false", "operator.replicas=1"])
    dep = next(o for o in objs if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"])
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert not [o for o in objs if o["kind"] == "PodDisruptionBudget" or "leader" in o["metadata"]["name"]]


def test_default_operator_runs_two_replicas_with_a_lease_and_a_disruption_budget() -> None:
    objs = render(namespace="mlops")
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "modelops-operator")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELOPS_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "modelops-operator")
    assert cm["data"]["MODELOPS_LEADER_ELECTION"] == "true" and cm["data"]["MODELOPS_LEASE_NAME"] == "modelops-operator"
    assert (cm["data"]["MODELOPS_LEASE_DURATION_SECONDS"], cm["data"]["MODELOPS_LEASE_RENEW_DEADLINE_SECONDS"],
            cm["data"]["MODELOPS_LEASE_RETRY_PERIOD_SECONDS"]) == ("15", "10", "2")
    (pdb,) = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "modelops-operator-leader-election")
    assert role["metadata"]["namespace"] == "mlops"
    assert {"resourceNames": ["modelops-operator"], "verbs": ["get", "update"]}.items() <= role["rules"][0].items()


def test_namespaced_install_has_no_cluster_role_for_the_modelops_kinds() -> None:
    objs = render([CHART / "ci" / "02-namespaced-values.yaml"])
    cluster_rules = [r for o in objs if o["kind"] == "ClusterRole" for r in o["rules"]]
    granted = {res for r in cluster_rules for res in r["resources"]}
    assert granted <= {"customresourcedefinitions", "namespaces", "secrets"}, granted
    roles = {o["metadata"]["namespace"] for o in objs if o["kind"] == "Role"
             and not o["metadata"]["name"].endswith("-leader-election")}
    assert roles == {"team-a", "team-b"}
    # the leader Lease lives in the release's own namespace, whatever is watched
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] == "Role"
            and o["metadata"]["name"].endswith("-leader-election")} == {"modelops"}
    bindings = {(o["metadata"]["namespace"], o["roleRef"]["name"]) for o in objs if o["kind"] == "RoleBinding"}
    assert ("shared-creds", "modelops-operator-secret-reader") in bindings
    assert ("team-a", "modelops-operator-secret-reader") not in bindings  # its Role already grants it


@pytest.mark.parametrize(("api_versions", "mode", "expected"), [
    ((), "auto", set()),
    (("monitoring.coreos.com/v1",), "auto", {"ServiceMonitor", "PodMonitor", "PrometheusRule"}),
    ((), "always", {"ServiceMonitor", "PodMonitor", "PrometheusRule"}),
    (("monitoring.coreos.com/v1",), "never", set()),
])
def test_prometheus_operator_objects_follow_the_capabilities(api_versions: tuple[str, ...], mode: str,
                                                             expected: set[str]) -> None:
    objs = render(sets=[f"monitoring.prometheusOperator={mode}", *EXPORTER], api_versions=api_versions)
    assert {o["kind"] for o in objs} & {"ServiceMonitor", "PodMonitor", "PrometheusRule"} == expected


def test_alerts_and_dashboard_cover_drift_rollout_and_latency() -> None:
    objs = render(api_versions=["monitoring.coreos.com/v1"])
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}  # + recording rules
    assert {"ModelopsFeatureDrift", "ModelopsDatasetDrift", "ModelopsRolloutRolledBack",
            "ModelopsServingLatencyHigh", "ModelopsOperatorUnavailable"} <= alerts
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["modelops-overview.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    # the model server's own histogram (KServe's request_predict_seconds misses the REST fast path, review M10)
    for metric in ("modelops_drift_feature_score_ratio", "modelops_rollout_canary_weight",
                   "modelops_serving_request_duration_seconds_bucket"):
        assert metric in exprs
    assert "request_predict_seconds" not in exprs and "request_predict_seconds" not in json.dumps(rule)


def test_operator_metrics_are_served_and_scraped_and_model_servers_carry_the_label_convention() -> None:
    """Review M10: the operator exports what the alerts read, a ServiceMonitor scrapes it, and the model
    servers' PodMonitor sets namespace, pod and isvc (the model server adds version, which tells a canary's sides
    apart); no `side` label, which nothing on a real KServe predictor Pod could tell."""
    objs = render(api_versions=["monitoring.coreos.com/v1"])
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "modelops-operator")
    port = int(cm["data"]["MODELOPS_METRICS_PORT"])
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "modelops-operator")
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == port
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "modelops-operator-metrics")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    sm = next(o for o in objs if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "modelops-operator")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    others = [o for o in objs if o["kind"] == "Service" and o is not svc]
    assert not [o for o in others if sm["spec"]["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items()]
    netpol = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "modelops-operator")
    assert [p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]] == [port]
    pm = next(o for o in objs if o["kind"] == "PodMonitor")
    targets = {r["targetLabel"] for r in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert targets == {"namespace", "pod", "isvc"} and "inferenceservice" not in targets
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    from modelops.controller.metrics import OperatorMetrics

    exported = {fam.name for fam in OperatorMetrics().registry.collect()}
    for name in ("modelops_rollout_rollbacks", "modelops_rollout_step_started_timestamp_seconds",
                 "modelops_rollout_canary_weight", "modelops_reconcile_errors"):
        assert name in exported and name in exprs, name


def test_long_release_names_are_truncated_to_63_characters_without_losing_the_role() -> None:
    release = "a-long-release-name-that-a-platform-team-might-pick-x"  # 53, helm's longest
    assert len(release) == 53
    objs = render(release=release, api_versions=["monitoring.coreos.com/v1"],
                  sets=["mlflow.bundled.enabled=true", *EXPORTER])
    objs += render(sets=["fullnameOverride=" + "f" * 70, "mlflow.bundled.enabled=true", *EXPORTER])
    names = [o["metadata"]["name"] for o in objs]
    assert all(len(n) <= 63 and not n.endswith("-") for n in names), [n for n in names if len(n) > 63]
    kinds_names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(kinds_names) == len(set(kinds_names)), "two objects got the same truncated name"
    assert any(n.endswith("-drift-exporter") for n in names) and any(n.endswith("-operator") for n in names)
    for o in objs:
        for v in o["metadata"].get("labels", {}).values():
            assert len(str(v)) <= 63


# ---- the console (issue 18) ------------------------------------------------------------------------------
CONSOLE_VALUES = CHART / "ci" / "05-console-values.yaml"


def test_console_is_off_by_default_and_one_value_turns_it_on() -> None:
    assert not [o for o in render() if "console" in o["metadata"]["name"] or "approver" in o["metadata"]["name"]]
    objs = render(sets=["console.enabled=true"])
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs
                   if "console" in o["metadata"]["name"] or "approver" in o["metadata"]["name"])
    assert kinds == ["ClusterRole/modelops-approver", "ClusterRole/modelops-console",
                     "ClusterRoleBinding/modelops-console", "Deployment/modelops-console",
                     "Secret/modelops-console-links", "Service/modelops-console", "ServiceAccount/modelops-console"]


def test_console_rbac_is_exactly_what_it_calls_and_the_approver_holds_the_verb() -> None:
    objs = render([CONSOLE_VALUES])
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "modelops-console")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in role["rules"]}
    assert rules == {
        (("authentication.k8s.io",), ("tokenreviews",)): ["create"],
        (("authorization.k8s.io",), ("subjectaccessreviews",)): ["create"],
        (("modelops.dev",), ("modeldeployments", "retrainschedules")): ["get", "list", "patch"],
        (("serving.kserve.io",), ("inferenceservices",)): ["get"],
        (("",), ("events",)): ["create", "list"],
    }
    approver = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "modelops-approver")
    assert approver["rules"] == [{"apiGroups": ["modelops.dev"], "resources": ["modeldeployments", "retrainschedules"],
                                  "verbs": ["get", "list", "watch", "approve"]}]
    assert not any(o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == "modelops-approver" for o in objs), \
        "who may approve is the cluster admin's choice: the chart binds nobody"


def test_console_wiring_ingress_and_httproute() -> None:
    objs = render([CONSOLE_VALUES], sets=["console.httpRoute.enabled=true", "console.httpRoute.parentRefs[0].name=public",
                                          "console.httpRoute.parentRefs[0].namespace=gateway",
                                          "console.httpRoute.hostnames[0]=modelops.example.com"])
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "modelops-console")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["args"] == ["console"] and c["image"].startswith("modelops/console:")
    assert env["MODELOPS_CONSOLE_PUBLIC_URL"] == "https://modelops.example.com"
    assert env["MODELOPS_CONSOLE_NAMESPACES"] == "ml-prod"
    assert env["MODELOPS_CONSOLE_SMTP_SECRET_DIR"] == "/etc/modelops/smtp"
    assert env["MODELOPS_CONSOLE_SLACK_WEBHOOK_FILE"] == "/etc/modelops/slack/webhook-url"
    assert env["MODELOPS_CONSOLE_LINK_SECRET_FILE"] == "/etc/modelops/links/link-secret"
    assert "MODELOPS_CONSOLE_DRIFT_TOKEN" not in env  # no drift exporter in these values
    # with the drift exporter on, its read API needs its shared secret (the model page got 401 without it on the
    # node)
    with_exporter = render([CONSOLE_VALUES], sets=["driftExporter.enabled=true",
                                                   "driftExporter.references[0]=churn=models:/churn/{version}"])
    dep = next(o for o in with_exporter if o["kind"] == "Deployment" and o["metadata"]["name"] == "modelops-console")
    token = next(e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
                 if e["name"] == "MODELOPS_CONSOLE_DRIFT_TOKEN")
    exporter_token = next(o for o in with_exporter if o["kind"] == "Secret" and "drift" in o["metadata"]["name"])
    assert token["valueFrom"]["secretKeyRef"]["name"] == exporter_token["metadata"]["name"]
    assert token["valueFrom"]["secretKeyRef"]["key"] in exporter_token["data"]
    vols = {v["name"]: v["secret"]["secretName"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert vols == {"links": "modelops-console-links", "smtp": "modelops-smtp", "slack": "modelops-slack"}
    ing = next(o for o in objs if o["kind"] == "Ingress")
    assert ing["spec"]["rules"][0]["host"] == "modelops.example.com"
    assert ing["spec"]["tls"][0]["secretName"] == "modelops-console-tls"
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "modelops-console", "port": 80}]


@pytest.mark.parametrize("bad", [
    "console.enabeld=true",
    "console.enabled=true,console.email.existingSecret=smtp",       # links need the console's public URL
    "console.enabled=true,console.httpRoute.enabled=true",          # a route attaches to at least one Gateway
    "console.publicUrl=modelops.example.com",                       # a URL, with its scheme
    "console.signedLinks.ttlSeconds=5",
])
def test_invalid_console_values_fail_rendering(bad: str) -> None:
    proc = helm(*template_args(sets=[bad]), check=False)
    assert proc.returncode != 0, f"--set {bad} rendered"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_every_modelops_series_the_dashboard_and_alerts_read_is_exported_or_recorded() -> None:
    """Review M10: alerts and panels read `modelops_rollout_*` that nothing exported. Every `modelops_*` /
    `modelops:*` series they read is now exported by the operator (its registry), the model server or the drift
    exporter (their metric definitions), or recorded by the chart's own rules."""
    import re

    from modelops.controller.metrics import OperatorMetrics

    objs = render(sets=EXPORTER, api_versions=["monitoring.coreos.com/v1"])
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    dash = json.loads(cm["data"]["modelops-overview.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    read = {m for e in exprs for m in re.findall(r"\bmodelops[_:][A-Za-z0-9_:]*", e)}
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    known = {f.name + s for f in OperatorMetrics().registry.collect() for s in suffixes}
    sources = "".join((REPO / "operator/modelops" / f).read_text() for f in ("serving/metrics.py", "drift/metrics.py"))
    known |= {m + s for m in re.findall(r'"(modelops_[a-z0-9_]+)"', sources) for s in suffixes}
    known |= {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert read and not read - known, sorted(read - known)


def test_secret_names_limit_every_secret_rule() -> None:
    """Review M8: with rbac.secretNames the operator may get only those Secrets, in its watched namespaces
    and in rbac.secretNamespaces alike (resourceNames on every Secret rule); unset, nothing changes."""
    objs = render([CHART / "ci" / "02-namespaced-values.yaml"], ["rbac.secretNames={mlflow-credentials,hooks}"])
    rules = [r for o in objs if o["kind"] in ("Role", "ClusterRole") for r in o["rules"] if "secrets" in r["resources"]]
    assert len(rules) >= 3  # team-a, team-b and the shared secret-reader
    assert all(r.get("resourceNames") == ["mlflow-credentials", "hooks"] and r["verbs"] == ["get"] for r in rules)
    default = render([CHART / "ci" / "02-namespaced-values.yaml"])
    assert all("resourceNames" not in r for o in default if o["kind"] in ("Role", "ClusterRole")
               for r in o["rules"] if "secrets" in r["resources"])


def test_sharded_exporter_is_a_statefulset_with_stable_names_and_one_scrape_per_shard() -> None:
    """driftExporter.shards > 1 (issue 19): a StatefulSet (pod ordinal = shard id), a headless Service for the
    per-shard URLs the operator writes, the shard count in a ConfigMap the pods re-read (no restart on a
    reshard), and a ServiceMonitor that does not scrape the shards twice through the headless Service."""
    objs = render(sets=[*EXPORTER, "driftExporter.shards=3"], namespace="mlops",
                  api_versions=["monitoring.coreos.com/v1"])
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    sts = by[("StatefulSet", "modelops-drift-exporter")]
    assert ("Deployment", "modelops-drift-exporter") not in by
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "modelops-drift-exporter-shards"
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--shards-file=/etc/modelops/drift-shards/shards" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELOPS_DRIFT_SHARD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert "3" not in json.dumps(pod["containers"][0]["args"])  # the count is not in the pod template
    assert by[("ConfigMap", "modelops-drift-exporter-shards")]["data"] == {"shards": "3"}
    headless = by[("Service", "modelops-drift-exporter-shards")]
    assert headless["spec"]["clusterIP"] == "None"
    cfg = by[("ConfigMap", "modelops-operator")]["data"]
    assert cfg["MODELOPS_DRIFT_EXPORTER_URL"] == \
        "http://modelops-drift-exporter-{shard}.modelops-drift-exporter-shards.mlops.svc:8080/events"
    assert cfg["MODELOPS_DRIFT_EXPORTER_SHARDS"] == "3"
    monitor = by[("ServiceMonitor", "modelops-drift-exporter")]["spec"]["selector"]
    labels = headless["metadata"]["labels"]
    assert any(e["key"] in labels and e["operator"] == "DoesNotExist" for e in monitor["matchExpressions"])
    main = by[("Service", "modelops-drift-exporter")]["metadata"]["labels"]
    assert all(main.get(k) == v for k, v in monitor["matchLabels"].items())
    assert not any(e["key"] in main for e in monitor["matchExpressions"])
