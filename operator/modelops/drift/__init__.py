"""Drift exporter: KServe payload logs in, bounded Prometheus metrics and Evidently reports out.

- ``stats``     the pure drift math (numpy/scipy): which test per column, thresholds, PSI, data quality
- ``events``    KServe logger CloudEvents (binary/structured) and V1/V2 payloads -> columns
- ``window``    bounded ring buffer per model version, request/response join table
- ``reference`` reference profiles from paths or MLflow URIs
- ``service``   the exporter state (no web framework)
- ``metrics``   the Prometheus collector: metric names and the PromQL for drift triggers are documented there
- ``report``    Evidently HTML and the drift PNG
- ``app``/``cli`` FastAPI app and ``modelops drift-exporter``
"""
