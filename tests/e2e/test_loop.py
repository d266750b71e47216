"""The whole loop for real on a node, with KServe's own controller, webhooks, agent and storage initializer and
Traefik as the Gateway API data plane: train v1 in a Job -> serve -> shifted traffic (to the gateway only; the
payloads logged by KServe's agent) -> drift -> a drift-triggered Job trains v2 -> canary with Prometheus
analysis, the split measured at the gateway at each step -> approved in the console ->
promoted (MLflow champion alias moves) -> a bad
canary (a version its clients cannot use: Ready, answering 422) fails the sample's built-in analysis and is
rolled back through KServe. Prometheus is run by the Prometheus Operator from the chart's ServiceMonitors,
PodMonitor and PrometheusRule only; the operator's own series and every dashboard panel are checked at the end.

The same code runs `modelops demo` (modelops_dev.e2e.loop). The model namespace enforces the `restricted` Pod
Security Standard, so every Pod of the loop (trainer Jobs, MLflow, the exporter, predictors with KServe's
injected agent and storage initializer) is admitted under it.
"""

from __future__ import annotations

import json
import re

import pytest

from modelops_dev.e2e.console import approver_username
from modelops_dev.e2e.loop import MODEL, NAMESPACE_LABELS, SPLIT_MIN_REQUESTS, Loop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(5400)]


def test_full_loop(e2e_loop: Loop) -> None:
    loop = e2e_loop
    loop.preflight()
    loop.install()
    labels = loop.kube.get("namespace", loop.ns)["metadata"]["labels"]
    assert {k: labels.get(k) for k in NAMESPACE_LABELS} == NAMESPACE_LABELS, labels

    v1 = loop.train_v1()
    logs = loop.job_logs(v1["job"])
    # the trainer Pod really ran the search: its log has one line per trial ("trial 3/4 xgboost ...")
    trial_lines = re.findall(r"\] trial \d+/\d+ ", logs)
    assert v1["trials"] >= 2 and len(trial_lines) == v1["trials"], logs[-3000:]
    assert v1["version"] == "1"
    versions = loop.versions()
    assert [v["version"] for v in versions] == ["1"], versions

    loop.serve_v1()
    isvc = loop.isvc()
    assert isvc["spec"]["predictor"]["name"] == "v1"
    # KServe's controller realised it: its Deployment, its pod mutator's agent sidecar and storage initializer
    pods = loop.kube.get("pods", namespace=loop.ns, selector=f"serving.kserve.io/inferenceservice={MODEL}")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, pods
    containers = {c["name"]: c for c in running[0]["spec"]["containers"]}
    assert {"kserve-container", "agent"} <= set(containers), list(containers)
    # pvc:// models: KServe mounts the claim's path at /mnt/models itself (no init container for a PVC)
    mounts = {m["mountPath"] for m in containers["kserve-container"].get("volumeMounts") or []}
    assert "/mnt/models" in mounts, mounts
    assert loop.kube.get("deployment", f"{MODEL}-v1-predictor", loop.ns), "KServe made no predictor Deployment"
    # and an http:// model through KServe's injected storage initializer, admitted under `restricted`
    fetched = loop.storage_initializer_check()
    init = [c for c in fetched["pod"]["spec"]["initContainers"] if c["name"] == "storage-initializer"]
    assert init and init[0]["image"].endswith("modelops/kserve-storage-initializer:dev"), init
    assert fetched["log"].strip().startswith("3001 "), fetched["log"]

    try:
        v2 = loop.drift_and_retrain()
        assert v2["trigger"] == "drift" and v2["version"] == "2", v2
        # drift was really measured from the traffic KServe's agent logged, and read from Prometheus
        assert max(s["drift_share"] or 0 for s in loop.tl.samples) >= 0.3, loop.tl.samples
        assert [v["version"] for v in loop.versions()] == ["1", "2"]

        loop.canary_and_promote("2")
        md = loop.md()["status"]
        assert md["stable"]["version"] == "2" and not (md.get("canary") or {}).get("version")
        assert md["traffic"]["splitBy"] == "modelops", md["traffic"]
        assert loop.alias("champion") == "2"
        promoted = [h for h in md.get("history") or [] if h.get("version") == "2"]
        assert promoted and promoted[0]["result"] == "Promoted", md.get("history")
        # issue 18: the promotion waited for a person, approved in the console (its HTTP endpoint, as the demo
        # approver, through TokenReview + SubjectAccessReview); the audit record names that Kubernetes user
        approver = approver_username(loop.ns)
        assert loop.approval["record"]["actor"] == approver and loop.approval["record"]["via"] == "console", loop.approval
        decision = promoted[0].get("decision") or {}
        assert (decision.get("action"), decision.get("actor"), decision.get("via")) == ("promote", approver, "console")
        # a traffic step moves only the route's weights: from the canary's first traffic at the gateway to the
        # approval, neither predictor was restarted (same Deployment generation and pod template, same Pods, no
        # container restart); KServe copies the InferenceService's metadata into the pod templates
        print(json.dumps({"predictors": loop.restarts.get("summary")}))
        assert loop.restarts and not loop.restarts["problems"], loop.restarts["problems"]
        assert len(loop.restarts["snapshots"]) >= 3, loop.restarts["snapshots"]  # step 1, step 2, approval
        # the rollout went through the canary weights
        weights = {s["weight"] for s in loop.tl.samples}
        assert {25, 60} <= weights, sorted(weights)
        # at each canary step the gateway split the answers by the route's weights: >= 400, within 5 points
        print(json.dumps({"measured_splits": loop.splits}))
        assert len(loop.splits) == 2 and all(r["requests"] >= SPLIT_MIN_REQUESTS for r in loop.splits), loop.splits
        assert [r["problem"] for r in loop.splits] == ["", ""], loop.splits
        assert loop.isvc()["spec"]["predictor"]["name"] == "v2" and not loop.isvc()["spec"].get("canary")
        # no request failed at the model servers of the good versions
        assert loop.prom(f'sum(modelops_serving_requests_total{{namespace="{loop.ns}",status!~"2.."}})') in (None, 0.0)
        # labels (issue 17): the generator's truth for a share of the answered predictions, sent late and out
        # of order by the Ce-Id the client set, joined at the exporter with what KServe's agent logged
        fed = loop.label_report(settle_s=60)
        print(json.dumps({"labels": fed}))
        # a failed post (the API server's proxy busy) is retried: nothing is lost, but most posts go through
        assert fed["outcomes"].get("joined", 0) > 0 and fed["failed_posts"] <= fed["posts"], fed
        # a label is unmatched only when the agent's response event never reached the exporter
        assert fed["outcomes"].get("unmatched", 0) <= 0.02 * fed["sent"], fed
        # a label that came before the agent's (asynchronous, batched) logged event was answered `early`: its
        # outcome is only in the exporter's own counters, which must show it joined (or waiting, still counted)
        ex_labels = fed["exporter"]
        assert ex_labels["unmatched"] + ex_labels["early_waiting"] <= 0.02 * fed["sent"], fed
        # realised (from the labels) and estimated (CBPE, no labels) quality per version, read from Prometheus
        quality = [s.get("quality") or {} for s in loop.tl.samples]
        assert any("auc" in (q.get("realised") or {}).get("1", {}) for q in quality), quality[-3:]
        assert any("auc" in (q.get("estimated") or {}).get("1", {}) for q in quality), quality[-3:]
        assert any((q.get("realised") or {}).get("2") for q in quality), quality[-3:]

        bad = loop.bad_canary()
    finally:
        loop.stop_traffic()
    assert bad["version"] == "3" and bad["run"]["state"] == "GateFailed", bad
    assert bad["history"]["result"] == "RolledBack", bad
    # champion untouched, the version tagged rejected, the InferenceService back to v2 alone
    assert bad["champion_before"] == "2" and loop.alias("champion") == "2"
    assert loop.version_tags("3").get("modelops.dev/rejected"), loop.version_tags("3")
    isvc = loop.isvc()
    assert isvc["spec"]["predictor"]["name"] == "v2" and not isvc["spec"].get("canary"), isvc["spec"]
    assert (loop.md()["status"].get("stable") or {}).get("version") == "2"
    # the console's model page reads every source it shows (issue 18: it answered 500 on the operator's status,
    # then the drift exporter answered it 401)
    assert loop.approval["model_page"] == {"status": 200, "source_errors": []}, loop.approval["model_page"]
    # the canaries' payloads were logged (issue 13): KServe v0.20's canary Service skips the agent, so modelops
    # routes a canary's share through a Service of its own to the agent. v2 had rows at the exporter while it
    # waited for approval as the canary, and v3 served only ever as a canary
    assert (loop.canary_rows.get("2") or 0) > 0, loop.canary_rows
    v3_rows = loop.rows_ingested("3")
    assert v3_rows and v3_rows > 0, v3_rows
    # the bad version's answers were the clients' own failures (422), seen at the gateway
    assert loop.traffic is not None and loop.traffic.answers.get("HTTP 422", 0) > 0, loop.traffic.answers
    # the gateway never answered 5xx: not at the canaries' starts and steps, not at the promotion nor the rollback
    # (issue 13: KServe deleted the leaving predictor's Service while the route still sent traffic to it, and the
    # gateway answered 500 until it served the new route; the route now goes first)
    print(json.dumps({"gateway_answers": dict(loop.traffic.answers)}))
    assert not {k: n for k, n in loop.traffic.answers.items() if k.startswith("HTTP 5")}, loop.traffic.answers
    # it served (Ready, answering) and failed the sample's built-in success-rate: an analysis failure, not a deadline
    assert bad["history"]["reason"] == "AnalysisFailed", bad["history"]
    assert "success-rate" in bad["history"].get("message", ""), bad["history"]

    # issue 14: Prometheus is the Prometheus Operator's, configured only by the chart's monitoring objects
    config = loop.prometheus_config()
    jobs = sorted(j["job_name"] for j in config["scrape_configs"])
    assert all(j.split("/")[0] in ("serviceMonitor", "podMonitor") for j in jobs), jobs
    # the operator's own metrics, scraped through the chart's ServiceMonitor
    found = loop.check_operator_metrics()
    assert any("modelops_rollout_rollbacks_total" in n for n in found["modelops_rollout_"]), found
    assert any("modelops_retrain_runs_total" in n for n in found["modelops_retrain_"]), found
    # every panel of the shipped dashboard returns data from this Prometheus
    rows = loop.check_dashboard()
    print(json.dumps({"dashboard": rows}))
    print(json.dumps(loop.tl.to_json()["stage_seconds"]))
