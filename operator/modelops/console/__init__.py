"""`modelops console`: the web console for people (FastAPI, server-rendered pages, a little JavaScript).

It holds no state of its own: every page is read from the API server (ModelDeployments, RetrainSchedules,
InferenceServices), MLflow (version evidence, decision tags), Prometheus and the drift exporter (live
metrics). A decision is applied as the same annotation `modelops approve|reject` sets, so the operator
does the rest; who may decide is asked of the API server (TokenReview + SubjectAccessReview on the
custom verb `approve`). This package imports nothing from modelops.handlers: the runtimes stay apart.
"""
