"""Cluster certificates and kubeconfigs: one local CA (ECDSA P-256) and its leaves, built by the
webhook's own certificate helpers (webhook/certs.py); plus the RSA key that signs ServiceAccount tokens."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook import certs

VALIDITY = datetime.timedelta(days=365)
CA_VALIDITY = 10 * VALIDITY
CA_NAME = "sidecar-hotupgrade-e2e-ca"


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: file stem, subject, SANs and usage."""

    name: str
    common_name: str
    organization: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = False


def cert_specs(node_name: str, node_ip: str, service_ip: str) -> list[CertSpec]:
    """Every leaf certificate the control plane, kubelet and users need."""
    api_dns = (
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    return [
        CertSpec(
            "apiserver",
            "kube-apiserver",
            dns_names=api_dns,
            ip_addresses=("127.0.0.1", node_ip, service_ip),
            server=True,
        ),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
        CertSpec("admin", "hotupgrade-admin", "system:masters", client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        CertSpec("kube-proxy", "system:kube-proxy", client=True),
        CertSpec("kubelet-client", f"system:node:{node_name}", "system:nodes", client=True),
        CertSpec(
            "kubelet-server",
            node_name,
            dns_names=(node_name, "localhost"),
            ip_addresses=("127.0.0.1", node_ip),
            server=True,
        ),
    ]


def make_leaf(spec: CertSpec, ca: certs.KeyPair, now: datetime.datetime) -> certs.KeyPair:
    """A leaf certificate of `spec` signed by the CA (webhook/certs.py builds it)."""
    usages = [
        usage
        for usage, on in (
            (ExtendedKeyUsageOID.SERVER_AUTH, spec.server),
            (ExtendedKeyUsageOID.CLIENT_AUTH, spec.client),
        )
        if on
    ]
    return certs.issue_leaf(
        ca=ca,
        common_name=spec.common_name,
        organizations=(spec.organization,) if spec.organization else (),
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        usages=usages,
        now=now,
        validity=VALIDITY,
    )


def make_service_account_keys() -> tuple[bytes, bytes]:
    """RSA key pair that signs ServiceAccount tokens: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, public


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    """A one-context kubeconfig with embedded client certificate."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "hotupgrade", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": "hotupgrade", "context": {"cluster": "hotupgrade", "user": user}}],
        "current-context": "hotupgrade",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_pki(pki_dir: Path, node_name: str, node_ip: str, service_ip: str) -> None:
    """Write CA, leaf certs and ServiceAccount keys into pki_dir (files 0600)."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def put(name: str, data: bytes) -> None:
        path = pki_dir / name
        path.write_bytes(data)
        path.chmod(0o600)

    ca = certs.new_ca(now=now, validity=CA_VALIDITY, common_name=CA_NAME)
    put("ca.crt", ca.cert_pem)
    put("ca.key", ca.key_pem)
    for spec in cert_specs(node_name, node_ip, service_ip):
        leaf = make_leaf(spec, ca, now)
        put(f"{spec.name}.crt", leaf.cert_pem)
        put(f"{spec.name}.key", leaf.key_pem)
    sa_key, sa_pub = make_service_account_keys()
    put("sa.key", sa_key)
    put("sa.pub", sa_pub)
