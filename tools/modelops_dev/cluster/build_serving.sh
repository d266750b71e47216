#!/usr/bin/env bash
# Builds the serving stack the e2e tier installs next to modelops, from the Go module proxy only:
#   - KServe's controller manager (cmd/manager) and its agent (cmd/agent: the payload logger sidecar);
#   - KServe's install manifests (config/, incl. the full CRDs) copied out of the same module;
#   - the Gateway API CRDs (standard channel) from sigs.k8s.io/gateway-api at the version KServe requires;
#   - Traefik v3 (cmd/traefik), the Gateway API implementation that serves the HTTPRoutes (pure Go, no Envoy);
#   - the Prometheus Operator (cmd/operator, cmd/prometheus-config-reloader) and its CRDs (example/prometheus-operator-crd) from
#     github.com/prometheus-operator/prometheus-operator: it turns the chart's ServiceMonitor/PodMonitor/
#     PrometheusRule objects into the Prometheus configuration the e2e tier scrapes with.
#
# `go install github.com/kserve/kserve/cmd/manager@vX` fails because KServe's go.mod has replace directives
# (controller-runtime and the k8s.io modules pinned back, grpc/expr CVE pins); Traefik's has some too (its
# containous forks). As cluster/build_k8s.sh does for Kubernetes, each is built inside a small wrapper module
# that requires the release and carries the release's own replace/exclude directives, generated from the
# downloaded go.mod (never hard-coded: they change between releases). One wrapper per project, because
# KServe and Traefik pin different k8s.io versions.
#
# Output ($MODELOPS_CACHE, default ~/.cache/modelops), each with a .complete stamp; a second run is a no-op:
#   kserve/<v>/bin/{manager,agent}, kserve/<v>/config/...   gateway-api/<v>/standard/*.yaml
#   traefik/<v>/bin/traefik
#   prometheus-operator/<v>/bin/{operator,prometheus-config-reloader}, prometheus-operator/<v>/{crds,rbac}/*.yaml
set -euo pipefail

KSERVE_VERSION="${KSERVE_VERSION:-}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-}"
TRAEFIK_VERSION="${TRAEFIK_VERSION:-}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-}"
CACHE="${MODELOPS_CACHE:-$HOME/.cache/modelops}"
JOBS="${MODELOPS_BUILD_JOBS:-$(nproc)}"
PARTS="${SERVING_PARTS:-kserve gateway-api traefik}"

# need VAR: the pinned version a part is built at (modelops_dev/cluster/versions.py passes them all)
need() { [[ -n "${!1}" ]] || { echo "set $1 (modelops_dev/cluster/versions.py pins it)" >&2; exit 2; }; }

step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Print the replace and exclude directives of a go.mod (single-line and block forms), dropping replaces
# that point at a local directory (only meaningful inside the upstream repository).
carried_directives() {
  awk '
    function keep(kind, body) {
      if (kind == "replace") {
        split(body, parts, "=>"); rhs = parts[2]; gsub(/^[ \t]+/, "", rhs)
        if (rhs ~ /^\.\.?\//) { print "// dropped (local path): " kind " " body; return }
      }
      print kind " " body
    }
    /^(replace|exclude)[ \t]*\($/ { block = $1; next }
    block != "" && /^\)/ { block = ""; next }
    block != "" { line = $0; sub(/\/\/.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line); if (line != "") keep(block, line); next }
    /^(replace|exclude)[ \t]/ { kind = $1; line = $0; sub(/^(replace|exclude)[ \t]+/, "", line); sub(/\/\/.*/, "", line); keep(kind, line) }
  ' "$1"
}

# wrapper_module DIR MODULE VERSION NAME: a go.mod in DIR that requires MODULE@VERSION with its directives.
wrapper_module() {
  local dir="$1" module="$2" version="$3" name="$4" modfile go_line
  mkdir -p "$dir"
  modfile="$(GOFLAGS= go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$modfile" ]] || { echo "could not download $module@$version from the Go module proxy" >&2; exit 1; }
  go_line="$(awk '$1=="go"{print $2; exit}' "$modfile")"
  {
    echo "module modelops.dev/$name"
    echo
    echo "go $go_line"
    echo
    echo "require $module $version"
    echo
    echo "// carried over from $module@$version's go.mod (a dependency's replace/exclude directives are ignored)"
    carried_directives "$modfile"
  } > "$dir/go.mod"
  step "$name: wrapper module with $(grep -cE '^(replace|exclude) ' "$dir/go.mod") carried replace/exclude directives"
}

module_dir() { GOFLAGS= go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }

build_kserve() {
  need KSERVE_VERSION; need GATEWAY_API_VERSION
  local out="$CACHE/kserve/$KSERVE_VERSION"
  local stamp="$out/.complete"
  if [[ -f "$stamp" ]]; then step "kserve $KSERVE_VERSION: cached in $out"; return; fi
  mkdir -p "$out/bin"
  wrapper_module "$out/src" github.com/kserve/kserve "$KSERVE_VERSION" kserve-tools
  local src; src="$(module_dir github.com/kserve/kserve "$KSERVE_VERSION")"
  # the Gateway API version KServe is compiled against: the CRDs installed must serve what it reads
  local want; want="$(awk '$1=="sigs.k8s.io/gateway-api"{print $2; exit}' "$src/go.mod")"
  if [[ "$want" != "$GATEWAY_API_VERSION" ]]; then
    echo "KServe $KSERVE_VERSION requires sigs.k8s.io/gateway-api $want but GATEWAY_API_VERSION=$GATEWAY_API_VERSION" >&2
    exit 1
  fi
  rm -rf "$out/config"; cp -r "$src/config" "$out/config"; chmod -R u+w "$out/config"
  step "kserve: install manifests copied to $out/config"
  cd "$out/src"
  export CGO_ENABLED=0
  for cmd in manager agent; do
    if [[ -x "$out/bin/$cmd" ]]; then step "kserve $cmd: cached"; continue; fi
    step "building kserve $cmd $KSERVE_VERSION (cold: the slow part)"
    GOFLAGS=-mod=mod go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$out/bin/$cmd.tmp" \
      "github.com/kserve/kserve/cmd/$cmd"
    mv "$out/bin/$cmd.tmp" "$out/bin/$cmd"
  done
  touch "$stamp"
  step "kserve $KSERVE_VERSION: done ($out/bin)"
}

build_gateway_api() {
  need GATEWAY_API_VERSION
  local out="$CACHE/gateway-api/$GATEWAY_API_VERSION"
  if [[ -f "$out/.complete" ]]; then step "gateway-api $GATEWAY_API_VERSION: cached in $out"; return; fi
  local src; src="$(module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")"
  [[ -d "$src/config/crd/standard" ]] || { echo "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION has no config/crd/standard" >&2; exit 1; }
  rm -rf "$out"; mkdir -p "$out"
  cp -r "$src/config/crd/standard" "$out/standard"; chmod -R u+w "$out"
  touch "$out/.complete"
  step "gateway-api $GATEWAY_API_VERSION: standard-channel CRDs in $out/standard"
}

# lego_protocol_dns_only DIR: Traefik's ACME provider imports lego's DNS-provider registry, which compiles
# in every DNS-01 plugin lego ships (~180, each with its cloud SDK: 850 of the 2,500 packages of a Traefik
# build, 30% of its source). The gateway here never requests certificates, so the wrapper replaces lego with a
# copy of the same release whose registry keeps only the protocol-level providers (exec, httpreq, manual,
# rfc2136); any other name fails at configuration time with an error that says so. Everything else in
# Traefik, ACME's HTTP-01 and TLS-ALPN-01 challenges included, is the release's own code.
LEGO_DNS_KEEP="exec httpreq manual rfc2136"
lego_protocol_dns_only() {
  local dir="$1" lego_version lego_src gen
  lego_version="$(GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/go-acme/lego/v4)"
  lego_src="$(module_dir github.com/go-acme/lego/v4 "$lego_version")"
  [[ -d "$lego_src" ]] || { echo "could not download github.com/go-acme/lego/v4@$lego_version" >&2; exit 1; }
  rm -rf "$dir/lego"; cp -r "$lego_src" "$dir/lego"; chmod -R u+w "$dir/lego"
  gen="$dir/lego/providers/dns/zz_gen_dns_providers.go"
  [[ -f "$gen" ]] || { echo "lego $lego_version has no providers/dns/zz_gen_dns_providers.go: update lego_protocol_dns_only" >&2; exit 1; }
  python3 - "$gen" "$lego_version" $LEGO_DNS_KEEP <<'PY'
import sys
path, version, keep = sys.argv[1], sys.argv[2], sys.argv[3:]
src = open(path).read()
imports = [f'\t"github.com/go-acme/lego/v4/providers/dns/{name}"' for name in keep]
for name in keep:
    if f'case "{name}"' not in src:
        sys.exit(f"lego {version} has no DNS provider {name!r}: update LEGO_DNS_KEEP")
cases = "".join(f'\tcase "{name}":\n\t\treturn {name}.NewDNSProvider()\n' for name in keep)
open(path, "w").write(f"""// Rewritten by modelops' build_serving.sh from lego {version}'s generated registry: only the
// protocol-level DNS providers are compiled into this Traefik build.

package dns

import (
\t"fmt"

\t"github.com/go-acme/lego/v4/challenge"
{chr(10).join(imports)}
)

// NewDNSChallengeProviderByName Factory for DNS providers.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {{
\tswitch name {{
{cases}\tdefault:
\t\treturn nil, fmt.Errorf("DNS provider %s is not compiled into this Traefik build (modelops builds only {', '.join(keep)}; use the upstream Traefik image for the others)", name)
\t}}
}}
""")
PY
  GOFLAGS=-mod=mod go mod edit -replace "github.com/go-acme/lego/v4=./lego"
  step "traefik: lego $lego_version with the protocol-level DNS providers only ($LEGO_DNS_KEEP)"
}

build_traefik() {
  need TRAEFIK_VERSION
  local out="$CACHE/traefik/$TRAEFIK_VERSION"
  if [[ -f "$out/.complete" ]]; then step "traefik $TRAEFIK_VERSION: cached in $out"; return; fi
  mkdir -p "$out/bin"
  wrapper_module "$out/src" github.com/traefik/traefik/v3 "$TRAEFIK_VERSION" traefik-tools
  cd "$out/src"
  lego_protocol_dns_only "$out/src"
  step "building traefik $TRAEFIK_VERSION (cold: the slow part)"
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p "$JOBS" -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$out/bin/traefik.tmp" github.com/traefik/traefik/v3/cmd/traefik
  mv "$out/bin/traefik.tmp" "$out/bin/traefik"
  touch "$out/.complete"
  step "traefik $TRAEFIK_VERSION: done ($out/bin/traefik)"
}

build_prometheus_operator() {
  need PROMETHEUS_OPERATOR_VERSION
  local v="$PROMETHEUS_OPERATOR_VERSION" out="$CACHE/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION"
  if [[ -f "$out/.complete" && -d "$out/rbac" && -x "$out/bin/prometheus-config-reloader" ]]; then step "prometheus-operator $v: cached in $out"; return; fi
  mkdir -p "$out/bin"
  # its go.mod replaces its own pkg/apis/monitoring and pkg/client with local directories: the wrapper drops
  # those replaces and gets both submodules from the proxy
  wrapper_module "$out/src" github.com/prometheus-operator/prometheus-operator "$v" prometheus-operator-tools
  # upstream builds the release with those two directories of the same tag: require them at the tag too
  # (its go.mod may name an older patch release, which is what the proxy would give otherwise)
  local sub
  for sub in pkg/apis/monitoring pkg/client; do
    ( cd "$out/src" && GOFLAGS=-mod=mod go mod edit -require "github.com/prometheus-operator/prometheus-operator/$sub@$v" )
  done
  local src; src="$(module_dir github.com/prometheus-operator/prometheus-operator "$v")"
  [[ -d "$src/example/prometheus-operator-crd" ]] || { echo "prometheus-operator@$v has no example/prometheus-operator-crd" >&2; exit 1; }
  rm -rf "$out/crds" "$out/rbac"
  cp -r "$src/example/prometheus-operator-crd" "$out/crds"
  # the release's own install manifests (ServiceAccount, ClusterRole(Binding), Deployment): the install step
  # (modelops_dev/e2e/prometheus_operator.py) takes the RBAC from here
  cp -r "$src/example/rbac/prometheus-operator" "$out/rbac"
  chmod -R u+w "$out/crds" "$out/rbac"
  step "prometheus-operator: CRDs ($(ls "$out/crds" | wc -l) files) and RBAC copied to $out/{crds,rbac}"
  # cmd/operator, and cmd/prometheus-config-reloader: the sidecar the operator puts into every Prometheus Pod
  # (it unpacks the generated prometheus.yaml.gz and reloads Prometheus when the configuration changes)
  cd "$out/src"
  local cmd
  for cmd in operator prometheus-config-reloader; do
    if [[ -x "$out/bin/$cmd" ]]; then step "prometheus-operator $cmd: cached"; continue; fi
    step "building prometheus-operator $v cmd/$cmd (cold: the slow part)"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p "$JOBS" -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${v#v}" \
      -o "$out/bin/$cmd.tmp" "github.com/prometheus-operator/prometheus-operator/cmd/$cmd"
    mv "$out/bin/$cmd.tmp" "$out/bin/$cmd"
  done
  touch "$out/.complete"
  step "prometheus-operator $v: done ($out/bin/operator)"
}

main() {
  local part t0
  for part in $PARTS; do
    t0=$(date +%s)
    case "$part" in
      kserve) build_kserve ;;
      gateway-api) build_gateway_api ;;
      traefik) build_traefik ;;
      prometheus-operator) build_prometheus_operator ;;
      *) echo "unknown part $part (kserve, gateway-api, traefik, prometheus-operator)" >&2; exit 2 ;;
    esac
    step "$part: $(( $(date +%s) - t0 ))s"
  done
}

# run when executed; sourcing it (the unit tests) only defines the functions
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main; fi
