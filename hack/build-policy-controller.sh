#!/usr/bin/env bash
# Builds the real-node tier's NetworkPolicy enforcer, kube-router's network
# policy controller (github.com/cloudnativelabs/kube-router/v2, run with
# --run-firewall only), from the Go module proxy, and caches it by version
# outside the work tree like hack/build-node.sh:
#
#   kube-router     github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
#
# It is built inside kube-router's own module (downloaded and checked against
# go.sum), so every dependency is the version kube-router locked: a wrapper
# module would re-resolve the dependencies of docker/docker (a module without
# go.mod) to their newest versions. It runs with Debian's iptables and ipset
# (make system-deps). A warm cache makes this a no-op. Prints the binary's path
# on its last line.
set -euo pipefail

KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
CACHE_ROOT="${SWITCHBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard}"
OUT_DIR="$CACHE_ROOT/policy-controller/kube-router-$KUBE_ROUTER_VERSION"
BINARY="$OUT_DIR/kube-router"
MODULE=github.com/cloudnativelabs/kube-router/v2

if [ -s "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi
log() { printf '[build-policy-controller] %s\n' "$*" >&2; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

log "Downloading $MODULE $KUBE_ROUTER_VERSION"
source_dir=$(go mod download -json "$MODULE@$KUBE_ROUTER_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -f "$source_dir/go.mod" ] || { log "no module source for $MODULE@$KUBE_ROUTER_VERSION"; exit 1; }

# The module cache is read-only: build from a copy.
build_dir="$CACHE_ROOT/policy-controller/build/kube-router-$KUBE_ROUTER_VERSION"
rm -rf "$build_dir"
mkdir -p "$(dirname "$build_dir")" "$OUT_DIR"
cp -r "$source_dir" "$build_dir"
chmod -R u+w "$build_dir"

log "Building kube-router $KUBE_ROUTER_VERSION"
(cd "$build_dir" && go build -trimpath \
  -ldflags "-s -w -X $MODULE/pkg/version.Version=$KUBE_ROUTER_VERSION" \
  -o "$BINARY.tmp" ./cmd/kube-router)
mv "$BINARY.tmp" "$BINARY"
rm -rf "$build_dir"
echo "$BINARY"
