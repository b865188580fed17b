# e2e: a real single-node Kubernetes on this machine (localcluster/README.md) and the suite that runs on it.
# `make e2e` installs what it needs, brings the cluster up, runs the suite and always tears the cluster down.
E2E_KUBECONFIG := /var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig
E2E_PYTEST_ARGS ?= -s  # the suite prints its figures (requests, failures, NotReady windows) as JSON lines
# kind: KIND empty = the pinned kind built from the Go module proxy (localcluster/kindnode/versions.py);
# KIND_NODE_IMAGE empty = kind v0.30.0's kindest/node:v1.34.0. KIND_OFFLINE=1 builds the base and node images
# on this machine instead of pulling them (no public registry needed; localcluster/README.md, "kind").
# KIND_KUBECONFIG empty = /tmp/hotupgrade-kind.kubeconfig (localcluster/kind.py DEFAULT_KUBECONFIG).
KIND ?=
KIND_CLUSTER ?= hotupgrade-e2e
KIND_NODE_IMAGE ?=
KIND_KUBECONFIG ?=
KIND_OFFLINE ?=
# What the suite runs on kind: pytest paths (empty: all of e2e/). KIND_CI_TESTS: what CI runs on kind after
# `make test` (.ci/run): the kind path end to end (engine, Dockerfiles, node image, load) and what issue 11 asks
# of kind: injection, upgrade and rollback under load, fleet rollout, guard, chart with the in-cluster
# controller and webhook; ~7.5 min warm, where the whole suite takes ~21 (localcluster/README.md, "kind").
E2E_KIND_TESTS ?=
KIND_CI_TESTS := e2e/test_injection.py e2e/test_upgrade.py e2e/test_fleet.py e2e/test_guard.py e2e/test_chart.py

.PHONY: cluster-up cluster-down cluster-status apiserver-up e2e-build e2e-images e2e-local e2e-kind e2e-kind-ci

## Local cluster: etcd, control plane, containerd, kubelet, kube-proxy, images imported (warm: seconds).
cluster-up: venv
	$(PY) -m localcluster up

## Stop everything and remove processes, mounts, netns, interfaces, iptables rules and state.
cluster-down: venv
	$(PY) -m localcluster down

cluster-status: venv
	$(PY) -m localcluster status

## etcd, kube-apiserver and kube-controller-manager (integration tests that need a real API server; no node).
apiserver-up: venv
	$(PY) -m localcluster apiserver

## Build (or find in /var/cache/sidecar-hotupgrade) the pinned Kubernetes binaries / the images.
e2e-build: venv
	$(PY) -m localcluster build
e2e-images: venv
	$(PY) -m localcluster images

## Integration tests of the controller, the webhook's certificates and the chart talk to the local API
## server (they skip without it, and a skip fails CI): bring the cluster up before them. `e2e` then finds it
## up, refreshes the images and tears it down at the end.
integration: cluster-up

## Up, suite, down (down runs even when up or the suite fails; the suite's exit code wins).
## E2E_KEEP_CLUSTER=1 skips the teardown (the cluster is shared by everyone on this machine).
e2e: venv
	$(PY) -m localcluster up && KUBECONFIG=$(E2E_KUBECONFIG) $(PY) -m pytest e2e $(E2E_PYTEST_ARGS); \
	rc=$$?; [ -n "$$E2E_KEEP_CLUSTER" ] || $(PY) -m localcluster down; exit $$rc

## The suite against whatever cluster KUBECONFIG names (the local one by default); no up/down.
e2e-local: venv
	KUBECONFIG=$${KUBECONFIG:-$(E2E_KUBECONFIG)} $(PY) -m pytest e2e $(E2E_PYTEST_ARGS)

## kind: an engine (the running one, else Debian's docker.io started and stopped here), images/Dockerfile's
## images, a cluster from e2e/kind-config.yaml, the images loaded, the pod and service CIDRs routed to the node
## (the suite talks to pod IPs and ClusterIPs from the host), the suite, and a teardown that always runs
## (localcluster/kind.py). KIND_OFFLINE=1 (or true, yes): no public registry needed.
e2e-kind: venv
	$(if $(filter-out 1 true yes 0 false no,$(KIND_OFFLINE)),$(error KIND_OFFLINE=$(KIND_OFFLINE): use 1, true or yes (offline), or 0, false, no or nothing (online)))
	KIND=$(KIND) KIND_CLUSTER=$(KIND_CLUSTER) KIND_NODE_IMAGE=$(KIND_NODE_IMAGE) KIND_KUBECONFIG=$(KIND_KUBECONFIG) \
	  $(PY) -m localcluster.kind e2e $(if $(filter 1 true yes,$(KIND_OFFLINE)),--offline) \
	  --tests "$(E2E_KIND_TESTS)" $(E2E_PYTEST_ARGS)

## kind in CI: the same, on KIND_CI_TESTS only.
e2e-kind-ci:
	$(MAKE) --no-print-directory e2e-kind E2E_KIND_TESTS="$(KIND_CI_TESTS)"
