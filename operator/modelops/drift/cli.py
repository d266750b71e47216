"""`modelops drift-exporter`: registered on the one `modelops` command (stdlib + typer imports only here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

# --help groups the options in tables, so that each table's help column is wide enough to read
IO, LIMITS, TESTS, REPORTS = "Input and server", "Windows and limits", "Drift tests", "Reports"
QUALITY = "Labels and quality"


def register(app: typer.Typer) -> None:
    app.command("drift-exporter")(drift_exporter)


def drift_exporter(
    reference: Annotated[list[str], typer.Option(
        "--reference", "-r", rich_help_panel=IO, metavar="<source>",
        help="[MODEL=]SOURCE, repeatable. SOURCE: a reference_profile.json, a model directory, or an MLflow "
             "URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH). '{version}' in SOURCE becomes "
             "each served version. Without MODEL= it applies to every model.")],
    host: Annotated[str, typer.Option(rich_help_panel=IO, help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(rich_help_panel=IO, help="Port to listen on.")] = 8080,
    mlflow_tracking_uri: Annotated[str | None, typer.Option(
        rich_help_panel=IO, help="MLflow tracking/registry URI for MLflow sources (default: $MLFLOW_TRACKING_URI).")] = None,
    window_rows: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Rows kept per model version (sliding window).")] = 10_000,
    window_age: Annotated[float, typer.Option(
        rich_help_panel=LIMITS, help="Seconds a row stays in the window.")] = 3600.0,
    min_rows: Annotated[int, typer.Option(
        rich_help_panel=TESTS, help="Rows needed before drift is judged ('insufficient data' "
                                                "below).")] = 200,
    join_timeout: Annotated[float, typer.Option(
        rich_help_panel=LIMITS, help="Seconds a logged request waits for its response "
                                                     "(0: do not wait, e.g. logger mode 'request').")] = 5.0,
    max_models: Annotated[int, typer.Option(rich_help_panel=LIMITS, help="Models tracked at most.")] = 50,
    max_versions: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Versions tracked per model.")] = 5,
    max_features: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Features with their own metric series per model "
                                                   "version.")] = 100,
    max_event_rows: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Rows accepted in one event.")] = 10_000,
    max_body_bytes: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Largest request body accepted.")] = 16 << 20,
    max_pending: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Requests/responses waiting for their partner.")] = 10_000,
    wasserstein_threshold: Annotated[float, typer.Option(
        rich_help_panel=TESTS, help="Normed Wasserstein distance at which a "
                                                              "numeric feature drifted.")] = 0.1,
    jensenshannon_threshold: Annotated[float, typer.Option(
        rich_help_panel=TESTS, help="Jensen-Shannon distance at which a "
                                                                "categorical feature drifted.")] = 0.1,
    p_value_threshold: Annotated[float, typer.Option(
        rich_help_panel=TESTS, help="p-value below which KS/chi-square/z tests "
                                                          "(small references) say drift.")] = 0.05,
    drift_share: Annotated[float, typer.Option(
        rich_help_panel=TESTS, help="Share of drifted features for dataset drift.")] = 0.5,
    report_dir: Annotated[Path | None, typer.Option(
        rich_help_panel=REPORTS, help="Write HTML/PNG reports here on a schedule.")] = None,
    report_interval: Annotated[float, typer.Option(
        rich_help_panel=REPORTS, help="Seconds between scheduled reports.")] = 3600.0,
    report_ttl: Annotated[float, typer.Option(
        rich_help_panel=REPORTS, help="Seconds an on-demand report is reused.")] = 60.0,
    log_level: Annotated[str, typer.Option(rich_help_panel=IO, help="debug, info, warning, error.")] = "info",
    token_file: Annotated[Path | None, typer.Option(
        rich_help_panel=IO, help="File holding the shared secret (the chart mounts its Secret here; or "
                                 "$MODELOPS_DRIFT_TOKEN). Events need it as a bearer token or a namespace URL "
                                 "derived from it; see modelops.drift.auth.")] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", rich_help_panel=IO, help="Accept every event and serve every report without a token "
                                              "(local experiments only).")] = False,
    max_models_per_namespace: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Models tracked per namespace.")] = 10,
    shard_id: Annotated[int, typer.Option(
        rich_help_panel=IO, envvar="MODELOPS_DRIFT_SHARD_ID",
        help="This exporter's shard number (the StatefulSet pod ordinal); see --shards.")] = 0,
    shards: Annotated[int, typer.Option(
        rich_help_panel=IO, help="Exporter shards: this one owns the (namespace, model) pairs that rendezvous "
                                 "hashing gives --shard-id and answers others 421 (misdirected).")] = 1,
    shards_file: Annotated[Path | None, typer.Option(
        rich_help_panel=IO, help="File holding the shard count (the chart's ConfigMap), re-read every 5 s: a "
                                 "reshard drops the windows now owned by another shard without a restart. "
                                 "Overrides --shards.")] = None,
    max_inflight: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Event bodies read or decoded at once; more get 429 with Retry-After.")] = 64,
    max_inflight_bytes: Annotated[int, typer.Option(
        rich_help_panel=LIMITS, help="Bytes of event bodies read or decoded at once; more get 429.")] = 64 << 20,
    idle_seconds: Annotated[float, typer.Option(
        rich_help_panel=LIMITS, help="A model or version without rows for this long may give way to a new "
                                     "one when a cap is reached.")] = 600.0,
    quality_min_labels: Annotated[int, typer.Option(
        rich_help_panel=QUALITY, help="Joined labels a model version needs before its realised quality is "
                                      "exported (absent below).")] = 100,
    quality_window_rows: Annotated[int, typer.Option(
        rich_help_panel=QUALITY, help="Joined (prediction, label) rows kept per model version.")] = 10_000,
    quality_window_age: Annotated[float, typer.Option(
        rich_help_panel=QUALITY, help="Seconds a joined row stays in the quality window.")] = 86400.0,
    feedback_max_pending: Annotated[int, typer.Option(
        rich_help_panel=QUALITY, help="Predictions kept waiting for their label (about 60 bytes each; the "
                                      "oldest are overwritten).")] = 1_000_000,
    feedback_max_age: Annotated[float, typer.Option(
        rich_help_panel=QUALITY, help="Seconds a prediction waits for its label; later labels count as "
                                      "expired.")] = 3 * 86400.0,
    feedback_max_early: Annotated[int, typer.Option(
        rich_help_panel=QUALITY, help="Labels kept waiting for a prediction not logged yet (the agent logs "
                                      "asynchronously; about 70 bytes each; the oldest give way; 0: none, such "
                                      "labels are unmatched at once).")] = 100_000,
    feedback_max_early_age: Annotated[float, typer.Option(
        rich_help_panel=QUALITY, help="Seconds a label waits for its prediction to be logged; then it counts as "
                                      "unmatched.")] = 600.0,
) -> None:
    """Serve drift metrics for KServe payload logs: CloudEvents in, Prometheus metrics and reports out."""
    import logging

    import uvicorn

    from modelops.drift.app import IngressLimits, ReportSettings, create_app
    from modelops.drift.auth import Auth
    from modelops.drift.httpserver import CoalescingHttpToolsProtocol
    from modelops.drift.reference import ReferenceSpec, ReferenceStore
    from modelops.drift.service import Exporter, ExporterConfig
    from modelops.drift.stats import DriftConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = (token_file.read_text().strip() if token_file else os.environ.get("MODELOPS_DRIFT_TOKEN", "").strip())
    if not secret and not no_auth:
        raise typer.BadParameter("no token: pass --token-file (or set MODELOPS_DRIFT_TOKEN), or --no-auth to "
                                 "accept unauthenticated events", param_hint="--token-file")
    store = ReferenceStore([ReferenceSpec.parse(r) for r in reference],
                           tracking_uri=mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    try:
        store.preload()
    except RuntimeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--reference") from None
    cfg = ExporterConfig(
        window_rows=window_rows, window_age=window_age, join_timeout=join_timeout, max_models=max_models,
        max_models_per_namespace=max_models_per_namespace, idle_seconds=idle_seconds,
        max_versions=max_versions, max_features=max_features, max_event_rows=max_event_rows,
        max_body_bytes=max_body_bytes, max_pending=max_pending,
        shard_id=shard_id, shards=shards, shards_file=str(shards_file) if shards_file else None,
        quality_min_labels=quality_min_labels, quality_window_rows=quality_window_rows,
        quality_window_age=quality_window_age, feedback_max_pending=feedback_max_pending,
        feedback_max_age=feedback_max_age, feedback_max_early=feedback_max_early,
        feedback_max_early_age=feedback_max_early_age,
        drift=DriftConfig(min_rows=min_rows, wasserstein_threshold=wasserstein_threshold,
                          jensenshannon_threshold=jensenshannon_threshold,
                          p_value_threshold=p_value_threshold, drift_share=drift_share))
    app = create_app(Exporter(store, cfg), ReportSettings(ttl=report_ttl, directory=report_dir,
                                                          interval=report_interval if report_dir else 0.0),
                     Auth("" if no_auth else secret), IngressLimits(max_inflight, max_inflight_bytes))
    # one write per response (modelops.drift.httpserver); no proxy-header rewriting (nothing reads the client)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False,
                http=CoalescingHttpToolsProtocol, proxy_headers=False)
