#!/usr/bin/env bash
# Builds a real Kubernetes worker node for the real-node test tier from Go
# modules and caches it by version outside the work tree, like
# hack/build-control-plane.sh (whose Kubernetes module it reuses):
#
#   bin/kubelet                     k8s.io/kubernetes/cmd/kubelet
#   bin/containerd, ctr, containerd-shim-runc-v2
#                                   github.com/containerd/containerd/v2
#   cni/bridge, host-local, loopback, portmap
#                                   github.com/containernetworking/plugins
#   pause.tar                       the pod sandbox image (hack/node/pause.go,
#                                   static, FROM scratch), as a docker-archive
#
# The container runtime is Debian's runc (make system-deps). A warm cache
# makes this a no-op. Prints the node directory on its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
CNI_VERSION="${CNI_VERSION:-v1.10.0}"
CACHE_ROOT="${SWITCHBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard}"
NODE_DIR="$CACHE_ROOT/node/k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_VERSION"
BUILD_DIR="$CACHE_ROOT/node/build"
PAUSE_IMAGE="localhost/switchboard/pause:1"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
want=(bin/kubelet bin/containerd bin/ctr bin/containerd-shim-runc-v2
      cni/bridge cni/host-local cni/loopback cni/portmap pause.tar)

complete() {
  for f in "${want[@]}"; do [ -s "$NODE_DIR/$f" ] || return 1; done
}

if complete; then
  echo "$NODE_DIR"
  exit 0
fi
mkdir -p "$NODE_DIR/bin" "$NODE_DIR/cni" "$BUILD_DIR"
log() { printf '[build-node] %s\n' "$*" >&2; }

# A Go module that only requires `module@version` and imports `packages`, so
# `go build` can build their commands at exactly that version.
tool_module() {  # dir module-path version package...
  local dir=$1 module=$2 version=$3; shift 3
  mkdir -p "$dir"
  [ -f "$dir/go.mod" ] && return 0
  log "Resolving $module $version"
  printf 'module switchboard.dev/node/%s\n\ngo 1.26.0\n\nrequire %s %s\n' \
    "$(basename "$dir")" "$module" "$version" > "$dir/go.mod"
  { printf 'package tools\n\nimport (\n'; printf '\t_ "%s"\n' "$@"; printf ')\n'; } > "$dir/tools.go"
  (cd "$dir" && go mod tidy >&2)
}

go_build() {  # dir output package [flags...]
  local dir=$1 out=$2 pkg=$3; shift 3
  [ -s "$out" ] && return 0
  log "Building $(basename "$out")"
  (cd "$dir" && go build -trimpath "$@" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

# --- kubelet: the control plane's Kubernetes module (staging modules mapped to
# their published tags) with the kubelet's package added.
build_kubelet() {
  local cp_source="$CACHE_ROOT/controlplane/build/kubernetes-$K8S_VERSION"
  [ -f "$cp_source/go.mod" ] || bash "$HERE/build-control-plane.sh" >/dev/null
  local dir="$BUILD_DIR/kubelet-$K8S_VERSION"
  mkdir -p "$dir"
  if [ ! -f "$dir/tools.go" ]; then
    cp "$cp_source/go.mod" "$cp_source/go.sum" "$dir/"
    sed -i 's#^module .*#module switchboard.dev/node/kubelet#' "$dir/go.mod"
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kubelet/app"\n)\n' > "$dir/tools.go"
  fi
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  done
  go_build "$dir" "$NODE_DIR/bin/kubelet" k8s.io/kubernetes/cmd/kubelet -ldflags "$ld"
}

build_containerd() {
  local dir="$BUILD_DIR/containerd-$CONTAINERD_VERSION" m=github.com/containerd/containerd/v2
  tool_module "$dir" "$m" "$CONTAINERD_VERSION" \
    "$m/cmd/containerd" "$m/cmd/ctr" "$m/cmd/containerd-shim-runc-v2"
  local ld="-s -w -X $m/version.Version=$CONTAINERD_VERSION"
  for cmd in containerd ctr containerd-shim-runc-v2; do
    go_build "$dir" "$NODE_DIR/bin/$cmd" "$m/cmd/$cmd" \
      -tags "no_btrfs no_devmapper no_zfs no_aufs" -ldflags "$ld"
  done
}

build_cni() {
  local dir="$BUILD_DIR/cni-$CNI_VERSION" m=github.com/containernetworking/plugins
  local plugins=(main/bridge main/loopback ipam/host-local meta/portmap)
  tool_module "$dir" "$m" "$CNI_VERSION" "${plugins[@]/#/$m/plugins/}"
  for p in "${plugins[@]}"; do
    go_build "$dir" "$NODE_DIR/cni/$(basename "$p")" "$m/plugins/$p" -ldflags "-s -w"
  done
}

build_pause() {
  [ -s "$NODE_DIR/pause.tar" ] && return 0
  local dir="$BUILD_DIR/pause"
  mkdir -p "$dir"
  cp "$HERE/node/pause.go" "$dir/main.go"
  printf 'module switchboard.dev/node/pause\n\ngo 1.26.0\n' > "$dir/go.mod"
  log "Building the pause image"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o pause .)
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$dir/Containerfile"
  podman build --quiet --network=none --tag "$PAUSE_IMAGE" "$dir" >/dev/null
  podman save --quiet --format docker-archive --output "$NODE_DIR/pause.tar.tmp" "$PAUSE_IMAGE"
  mv "$NODE_DIR/pause.tar.tmp" "$NODE_DIR/pause.tar"
}

build_cni
build_pause
build_containerd
build_kubelet
complete || { log "Some parts are missing in $NODE_DIR"; exit 1; }
echo "$NODE_DIR"
