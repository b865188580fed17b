# Helm chart (issue 6): the helm binary, built from the Go module proxy at a pinned version.
# Cached outside the repo keyed by version, so `make clean` and fresh work trees reuse it.
HELM_VERSION ?= v3.22.0
# The Kubernetes minor of the client-go that helm $(HELM_VERSION) requires (its go.mod): helm's default
# .Capabilities.KubeVersion for `helm template`/`lint`, as upstream's own Makefile stamps it.
HELM_K8S_MINOR ?= 37
SIDECAR_HOTUPGRADE_CACHE ?= /var/cache/sidecar-hotupgrade
export SIDECAR_HOTUPGRADE_CACHE
HELM_CACHE ?= $(SIDECAR_HOTUPGRADE_CACHE)/helm-$(HELM_VERSION)
HELM := $(HELM_CACHE)/bin/helm
# Go from PATH, else the toolchain's usual home (CI runs with a minimal environment).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
CHART_DIR := charts/sidecar-hotupgrade

.PHONY: helm chart-lint chart-test

# Upstream's release ldflags: without them `helm version` says "v3.22" and helm renders for Kubernetes
# 1.20, which fails the chart's kubeVersion constraint.
HELM_LDFLAGS := -s -w \
	-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)

# A shared 2-core box: build one package at a time at low priority. `go install` into a temp
# dir then rename, so an interrupted build never leaves a half-written binary behind.
$(HELM):
	rm -rf $(HELM_CACHE)/tmp && mkdir -p $(HELM_CACHE)/tmp
	GOBIN=$(HELM_CACHE)/tmp GOFLAGS=-p=1 CGO_ENABLED=0 nice -n 10 \
		$(GO) install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mkdir -p $(HELM_CACHE)/bin
	mv $(HELM_CACHE)/tmp/helm $(HELM)
	rmdir $(HELM_CACHE)/tmp
	$(HELM) version --short

## The pinned helm binary (idempotent: skipped when the cached binary exists).
helm: $(HELM)

# tests/integration/chart finds the binary through this variable (exported to every recipe).
export SIDECAR_HOTUPGRADE_HELM := $(abspath $(HELM))

chart-lint: helm
	$(HELM) lint --strict $(CHART_DIR)

## The chart's tests alone (tests/integration/chart: lint, render, validate, schema, RBAC).
chart-test: helm venv
	$(PY) -m pytest tests/integration/chart

# The chart tests run the real helm binary: the integration suite needs it built first.
integration: helm
# e2e/test_chart.py installs the chart with the same binary.
e2e e2e-local e2e-kind: helm
