#!/usr/bin/env bash
# Everything the tests and the demo need on a fresh Debian machine, idempotent and cached by version:
# system packages (apt), uv, the locked Python environment, and the Kubernetes binaries built from the
# Go module proxy (modelops cluster build). A second run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
# Debian packages the tests start as real services (see tests/fixtures); Chromium drives the console's browser tests.
APT_PACKAGES=(prometheus chromium chromium-driver)

step() { printf '\n==> %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests run their own Prometheus on free ports; the packaged service is not needed.
  if command -v systemctl >/dev/null && systemctl is-active -q prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus || true
  fi
fi

if ! command -v uv >/dev/null || [[ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
  step "installing uv $UV_VERSION"
  python3 -m pip install -q "uv==$UV_VERSION"
fi

step "syncing the Python environment (uv.lock, all extras)"
uv sync --frozen --all-extras

step "promtool (the e2e Prometheus' version, built once from its Go module): the unit tier's alert tests"
uv run --frozen modelops images promtool

step "Kubernetes binaries (built once per version from the Go module proxy)"
uv run --frozen modelops cluster build

# The cluster tier runs KServe's own manager and webhooks (tests/cluster/test_kserve_webhooks.py) on the
# Gateway API CRDs: built once per version (~10 min cold). Traefik, the e2e data plane (~1 h cold), is built
# by `make e2e` / `make demo` (tests/e2e/test_gateway_split.py), not here.
# The Prometheus Operator (~15 min cold): tests/charts/test_prometheus_operator.py runs it against the chart's
# ServiceMonitor/PodMonitor/PrometheusRule objects.
step "KServe v0.20.0 (manager, agent, manifests), the Gateway API CRDs and the Prometheus Operator (once per version, Go module proxy)"
uv run --frozen modelops cluster build-serving gateway-api kserve prometheus-operator
