#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries, kubectl, etcd and helm from the Go module proxy.
#
# `go install k8s.io/kubernetes/cmd/...` does not work: k8s.io/kubernetes' go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with a local path. A small wrapper module requires
# k8s.io/kubernetes at the pinned release and replaces each staging module with its published v0.Y.Z tag.
# The replace list is generated from the downloaded go.mod (every requirement at v0.0.0), because it
# changes between minors (1.37 added k8s.io/cri-streaming and k8s.io/streaming).
#
# Output: $MODELOPS_CACHE/k8s/<version>/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,
#         kubelet,kube-proxy,kubectl,helm} and a .complete stamp. A second run with the stamp present is a no-op.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:?set K8S_VERSION (modelops_dev/cluster/versions.py pins it)}"
HELM_VERSION="${HELM_VERSION:?set HELM_VERSION (modelops_dev/cluster/versions.py pins it)}"
CACHE="${MODELOPS_CACHE:-$HOME/.cache/modelops}"
OUT="$CACHE/k8s/$K8S_VERSION"
BIN="$OUT/bin"
STAMP="$OUT/.complete-$HELM_VERSION"
JOBS="${MODELOPS_BUILD_JOBS:-$(nproc)}"

if [[ -f "$STAMP" ]]; then
  echo "k8s binaries $K8S_VERSION (helm $HELM_VERSION) already built in $BIN"
  exit 0
fi

mkdir -p "$BIN" "$OUT/src"
step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

minor="${K8S_VERSION#v1.}"          # 37.2
staging_version="v0.${minor}"       # v0.37.2
ldflags_version() {
  local major=1 minor_only="${minor%%.*}"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- ' -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitCommit=modelops-build -X %s.gitTreeState=clean -X %s.buildDate=%s' \
      "$pkg" "$K8S_VERSION" "$pkg" "$major" "$pkg" "$minor_only" "$pkg" "$pkg" "$pkg" "1970-01-01T00:00:00Z"
  done
}

cd "$OUT/src"
step "downloading k8s.io/kubernetes@$K8S_VERSION metadata"
modfile="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "$modfile" ]] || { echo "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy" >&2; exit 1; }
go_line="$(awk '$1=="go"{print $2; exit}' "$modfile")"
{
  echo "module modelops.dev/k8s-tools"
  echo
  echo "go $go_line"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  # every staging module appears in k8s.io/kubernetes' require block at v0.0.0
  awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$modfile" | sort -u | while read -r m; do
    printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"
  done
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
step "resolving modules ($(grep -c '=>' go.mod) staging replaces)"
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
# make sure the etcd main package is in the graph even if tidy dropped it
GOFLAGS=-mod=mod go get go.etcd.io/etcd/server/v3@"$(awk '/go.etcd.io\/etcd\/server\/v3/{print $2; exit}' "$modfile")" >/dev/null

export CGO_ENABLED=0
LDFLAGS="-s -w $(ldflags_version)"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  if [[ -x "$BIN/$cmd" ]]; then step "$cmd: cached"; continue; fi
  step "building $cmd (this is the slow part on a cold cache)"
  GOFLAGS=-mod=mod go build -p "$JOBS" -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
if [[ ! -x "$BIN/etcd" ]]; then
  step "building etcd"
  GOFLAGS=-mod=mod go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi
if [[ ! -x "$BIN/helm" ]]; then
  step "building helm $HELM_VERSION"
  # Helm's Makefile stamps the Kubernetes version its client-go matches (v0.X.Y -> 1.X) into the default
  # capabilities of `helm template`/`lint`; without it an offline render assumes Kubernetes 1.20.
  HELM_MOD="$(go env GOMODCACHE)/cache/download/helm.sh/helm/v3/@v/$HELM_VERSION.mod"
  [[ -f "$HELM_MOD" ]] || GOFLAGS= go mod download -json "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
  CG_MINOR="$(awk '$1=="k8s.io/client-go" {split($2, v, "."); print v[2]}' "$HELM_MOD")"
  HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$CG_MINOR"
  done
  GOBIN="$BIN" GOFLAGS= go install -trimpath -ldflags "$HELM_LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
touch "$STAMP"
step "done: $BIN"
"$BIN/kube-apiserver" --version
"$BIN/etcd" --version | head -1
"$BIN/kubectl" version --client 2>/dev/null | head -1
"$BIN/helm" version --short
