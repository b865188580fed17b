"""Fixed versions, paths, ports and address ranges of the local e2e cluster."""

from __future__ import annotations

import os
from pathlib import Path

# Pinned Kubernetes release; the reasons are in localcluster/README.md.
K8S_VERSION = "v1.34.4"
K8S_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
# The sandbox image tag the kubelet and containerd of this release expect.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_MODULE = Path(__file__).resolve().parent / "k8sbuild"

# Everything built once and reused (Kubernetes, images, helm); one variable moves it (`make fresh-test`).
CACHE_DIR = Path(os.environ.get("SIDECAR_HOTUPGRADE_CACHE", "/var/cache/sidecar-hotupgrade"))
K8S_BIN_DIR = CACHE_DIR / f"k8s-{K8S_VERSION}" / "bin"
GO_BUILD_CACHE = CACHE_DIR / "go-build"
IMAGE_CACHE = CACHE_DIR / "images"

STATE_ROOT = Path("/var/lib/sidecar-hotupgrade")
CLUSTER_DIR = STATE_ROOT / "cluster"
ADMIN_KUBECONFIG = CLUSTER_DIR / "admin.kubeconfig"
PKI_DIR = CLUSTER_DIR / "pki"
LOG_DIR = CLUSTER_DIR / "logs"
PID_DIR = CLUSTER_DIR / "pids"
ETCD_DATA = CLUSTER_DIR / "etcd"
KUBELET_ROOT = CLUSTER_DIR / "kubelet"
CNI_CONF_DIR = CLUSTER_DIR / "cni" / "net.d"
CNI_IPAM_DIR = CLUSTER_DIR / "cni" / "ipam"
SAVED_SYSCTLS = CLUSTER_DIR / "sysctls.json"
# The e2e registry's state; containerd's CRI reads `<host:port>/hosts.toml` under REGISTRY_HOSTS_DIR.
REGISTRY_DIR = CLUSTER_DIR / "registry"
REGISTRY_HOSTS_DIR = REGISTRY_DIR / "certs.d"
CONTAINERD_ROOT = STATE_ROOT / "containerd"
RUN_DIR = Path("/run/sidecar-hotupgrade")
CONTAINERD_STATE = RUN_DIR / "containerd"
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
RUNC_ROOT = RUN_DIR / "runc"
CNI_BIN_DIR = Path("/usr/lib/cni")

# What the images are made from: the debootstrap rootfs, busybox-static's /bin/busybox, and pause compiled
# static with gcc (libc6-dev has the static libc); the kind path needs them without the local cluster.
IMAGE_PACKAGES = ("busybox-static", "debootstrap", "gcc", "libc6-dev")
APT_PACKAGES = (
    *IMAGE_PACKAGES,
    "conntrack",
    "containerd",
    "containernetworking-plugins",
    "etcd-server",
    "iptables",
    "runc",
)

NODE_NAME = "hotupgrade-node"
ETCD_CLIENT_URL = "http://127.0.0.1:23790"
ETCD_PEER_URL = "http://127.0.0.1:23800"
APISERVER_PORT = 6443
APISERVER_LOCAL_URL = f"https://127.0.0.1:{APISERVER_PORT}"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP_KUBERNETES = "10.96.0.1"
POD_CIDR = "10.244.0.0/24"
BRIDGE_NAME = "hotupgrade0"
CNI_NETWORK_NAME = "hotupgrade"

# Sysctls the cluster needs on the host; their previous values are restored on teardown.
HOST_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
# iptables chains created by kubelet, kube-proxy and the CNI plugins start with these.
CHAIN_PREFIXES = ("KUBE-", "CNI-")
