#!/usr/bin/env bash
# A working Switchboard on a local kind cluster, from this checkout:
#
#   1. create the kind cluster of kind-config.yaml (kept if it exists);
#   2. build the operator/router image and every plugin image under plugin-images/;
#   3. load them into the cluster's nodes (`kind load docker-image`);
#   4. `helm upgrade --install` the chart into $NAMESPACE;
#   5. apply examples/ into $EXAMPLES_NAMESPACE, creating each missing Secret
#      with obviously fake placeholder values, so every plugin can start.
#
# Needs docker, kind, kubectl and helm on PATH. Settings (environment):
#   CLUSTER=switchboard  NAMESPACE=switchboard-system  EXAMPLES_NAMESPACE=default
#   SKIP_BUILD=1 (reuse images already built)  SKIP_EXAMPLES=1
#
# The placeholder Secrets hold values like "placeholder-not-a-real-credential":
# the plugins start and report Ready, but every send to a real provider fails
# until you replace them with real credentials (kubectl create secret ...
# --dry-run=client -o yaml | kubectl apply -f -). A Secret that already exists
# is never touched.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER="${CLUSTER:-switchboard}"
NAMESPACE="${NAMESPACE:-switchboard-system}"
EXAMPLES_NAMESPACE="${EXAMPLES_NAMESPACE:-default}"
VERSION="0.1.0"
REGISTRY="ghcr.io/switchboard-dev"
OPERATOR_IMAGE="$REGISTRY/switchboard:$VERSION"
# What plugin Dockerfiles build FROM (their BASE_IMAGE default).
BASE_IMAGE="switchboard/plugin-base:$VERSION"
PLACEHOLDER="placeholder-not-a-real-credential"

log() { printf '\n==> %s\n' "$*"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not on PATH" >&2; exit 1; }
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "Using the existing kind cluster $CLUSTER"
else
  log "Creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

images=("$OPERATOR_IMAGE")
if [[ -z "${SKIP_BUILD:-}" ]]; then
  log "Building $OPERATOR_IMAGE"
  docker build -t "$OPERATOR_IMAGE" .

  log "Building the plugin base image"
  docker build -f plugin-images/base/Dockerfile \
    -t "$BASE_IMAGE" -t "$REGISTRY/plugin-base:$VERSION" .
fi
for dockerfile in plugin-images/*/Dockerfile; do
  dir="$(basename "$(dirname "$dockerfile")")"
  [[ "$dir" == base ]] && continue  # built above; plugins bake it in, pods never run it
  image="$REGISTRY/plugin-$dir:$VERSION"
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "Building $image"
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "plugin-images/$dir"
  fi
  images+=("$image")
done

log "Loading ${#images[@]} images into kind"
kind load docker-image --name "$CLUSTER" "${images[@]}"

log "Installing the chart into $NAMESPACE"
helm upgrade --install switchboard helm/switchboard \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.pullPolicy=IfNotPresent \
  --wait --timeout 5m

if [[ -n "${SKIP_EXAMPLES:-}" ]]; then
  exit 0
fi

log "Applying examples/ into $EXAMPLES_NAMESPACE"
kubectl get namespace "$EXAMPLES_NAMESPACE" >/dev/null 2>&1 \
  || kubectl create namespace "$EXAMPLES_NAMESPACE"
for example in examples/*.yaml; do
  # "<secret> <key> <key> ..." of spec.secretRef and spec.requiredSecrets.
  read -r -a wanted < <(kubectl create --dry-run=client -f "$example" -o \
    jsonpath='{.spec.secretRef.name}{" "}{range .spec.requiredSecrets[*]}{@}{" "}{end}') || true
  secret="${wanted[0]:-}"
  if [[ -n "$secret" ]] && ! kubectl -n "$EXAMPLES_NAMESPACE" get secret "$secret" >/dev/null 2>&1; then
    literals=()
    for key in "${wanted[@]:1}"; do
      literals+=("--from-literal=$key=$PLACEHOLDER")
    done
    echo "Creating placeholder Secret $secret (${wanted[*]:1}) for $example"
    kubectl -n "$EXAMPLES_NAMESPACE" create secret generic "$secret" "${literals[@]}"
    kubectl -n "$EXAMPLES_NAMESPACE" label secret "$secret" switchboard.dev/placeholder=true
  fi
  kubectl -n "$EXAMPLES_NAMESPACE" apply -f "$example"
done

log "Done"
cat <<EOT
  kubectl -n $EXAMPLES_NAMESPACE get switchboard
  kubectl -n $EXAMPLES_NAMESPACE wait --for=condition=Ready communicationplugins,vendorintegrations --all --timeout=180s

Examples whose image has no folder under plugin-images/ stay not Ready
(ImagePullBackOff) until their image is published. Secrets labelled
switchboard.dev/placeholder=true hold fake values; replace them to send for real.
EOT
