# e2e: a real single-node Kubernetes on this machine (localcluster/README.md) and the suite that runs on it.
# `make e2e` installs what it needs, brings the cluster up, runs the suite and always tears the cluster down.
E2E_KUBECONFIG := /var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig
E2E_PYTEST_ARGS ?= -s  # the suite prints its figures (requests, failures, NotReady windows) as JSON lines
KIND ?= kind
KIND_CLUSTER ?= hotupgrade-e2e
KIND_NODE_IMAGE ?= kindest/node:v1.34.0
KIND_KUBECONFIG ?= /tmp/hotupgrade-kind.kubeconfig

.PHONY: cluster-up cluster-down cluster-status apiserver-up e2e-build e2e-images e2e-local e2e-kind

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

## kind (machines with Docker, Linux): build the Dockerfiles, load them, run the suite, delete the cluster.
## The suite talks to pod IPs from the host (load, agent /status), so the pod CIDR is routed to the node;
## it installs the chart itself (the webhook and controller run in the cluster).
KIND_POD_CIDR ?= 10.244.0.0/16
e2e-kind: venv
	images/kind-build.sh
	$(KIND) create cluster --name $(KIND_CLUSTER) --image $(KIND_NODE_IMAGE) --config e2e/kind-config.yaml \
	  --kubeconfig $(KIND_KUBECONFIG)
	for img in sidecar-hotupgrade/sidecar:0.1.0 sidecar-hotupgrade/sidecar:0.1.1 sidecar-hotupgrade/sidecar:broken \
	  sidecar-hotupgrade/empty:0.1.0 sidecar-hotupgrade/demo-app:0.1.0 sidecar-hotupgrade/webhook:0.1.0; do \
	  $(KIND) load docker-image --name $(KIND_CLUSTER) $$img || exit 1; done
	node=$$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' $(KIND_CLUSTER)-control-plane); \
	ip route replace $(KIND_POD_CIDR) via $$node; \
	KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m pytest e2e $(E2E_PYTEST_ARGS); rc=$$?; \
	ip route del $(KIND_POD_CIDR) via $$node; \
	$(KIND) delete cluster --name $(KIND_CLUSTER); rm -f $(KIND_KUBECONFIG); exit $$rc
