"""Dev tooling of modelops: the local cluster, the image builds, the e2e loop and the demo.

Not a runtime: it lives outside the runtime wheel (pyproject.toml builds operator/modelops and
pipelines/modelops_pipelines only) and no image installs it. The dev environment installs it as the uv
workspace member tools/ (package `modelops-dev`), and `modelops` then shows its subcommands (see cli.py).
"""
