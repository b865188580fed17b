"""Pins of the kind path; each says where the upstream value comes from."""

from __future__ import annotations

from pathlib import Path

from localcluster import settings as s

# The newest kind release whose default node image is Kubernetes 1.34 (our minor) and whose base image is
# Debian 12 like ours (v0.32 and later: Debian 13, Kubernetes 1.36+). Served by the Go module proxy.
KIND_VERSION = "v0.30.0"
KIND_MODULE = "sigs.k8s.io/kind"
# What users with internet get: kind v0.30.0's default node image (pkg/apis/config/defaults/image.go).
UPSTREAM_NODE_IMAGE = (
    "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
)

# Component versions of the offline node image. kubeadm v1.34.4 asks for etcd 3.6.5-0, CoreDNS v1.12.1
# and pause 3.10.1 (cmd/kubeadm/app/constants/constants.go); kind v0.30.0's base image has crictl v1.33.0,
# which the Go module proxy does not serve: v1.34.0 matches the Kubernetes minor instead.
ETCD_VERSION = "v3.6.5"
COREDNS_VERSION = "v1.12.1"
CRICTL_VERSION = "v1.34.0"

HERE = Path(__file__).resolve().parent
GO_MODULES = HERE / "gobuild"
KIND_CACHE = s.CACHE_DIR / "kind"


def kind_binary() -> Path:
    """Where the pinned kind binary is cached."""
    return KIND_CACHE / f"kind-{KIND_VERSION}" / "kind"
