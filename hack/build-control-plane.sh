#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from Go modules and caches the binaries by
# version outside the work tree. A warm cache makes this a no-op.
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${SWITCHBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard}"
BIN_DIR="$CACHE_ROOT/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION/bin"
BUILD_DIR="$CACHE_ROOT/controlplane/build"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete() {
  for b in "${want[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

if complete; then
  echo "$BIN_DIR"
  exit 0
fi
mkdir -p "$BIN_DIR" "$BUILD_DIR"
log() { printf '[build-control-plane] %s\n' "$*" >&2; }

# --- Kubernetes: k8s.io/kubernetes is not meant to be required as a module,
# its go.mod replaces every k8s.io staging module with a local path. Map each
# of those to the published v0.X.Y tag instead.
build_kubernetes() {
  local dir="$BUILD_DIR/kubernetes-$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}"
  mkdir -p "$dir" && cd "$dir"
  if [ ! -f go.mod ]; then
    log "Resolving k8s.io/kubernetes $K8S_VERSION"
    local upstream_mod
    upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    cat > go.mod <<MOD
module switchboard.dev/controlplane/kubernetes

go 1.26.0

require k8s.io/kubernetes $K8S_VERSION

MOD
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$upstream_mod" \
      | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}' >> go.mod
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler/app"\n\t_ "k8s.io/kubectl/pkg/cmd"\n)\n' > tools.go
    go mod tidy >&2
  fi
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local major=1 minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN_DIR/$cmd" ] && continue
    log "Building $cmd $K8S_VERSION"
    go build -trimpath -ldflags "$ld" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
  done
}

# --- etcd: the server's main lives in etcdmain; a three-line wrapper builds it.
build_etcd() {
  [ -x "$BIN_DIR/etcd" ] && return 0
  local dir="$BUILD_DIR/etcd-$ETCD_VERSION"
  mkdir -p "$dir" && cd "$dir"
  if [ ! -f go.mod ]; then
    log "Resolving etcd $ETCD_VERSION"
    printf 'module switchboard.dev/controlplane/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    go mod tidy >&2
  fi
  log "Building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" .
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

build_go_install() {  # name module@version
  [ -x "$BIN_DIR/$1" ] && return 0
  log "Installing $2"
  GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" "$2"
}

build_etcd
build_go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
build_go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_kubernetes
complete || { log "Some binaries are missing in $BIN_DIR"; exit 1; }
echo "$BIN_DIR"
