"""Cluster certificates and kubeconfigs, generated locally with `cryptography`."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


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


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organization: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def make_ca(now: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed CA: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("sidecar-hotupgrade-e2e-ca", None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_leaf(
    spec: CertSpec, ca_cert_pem: bytes, ca_key_pem: bytes, now: datetime.datetime
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: (cert PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [
        u
        for u, on in (
            (ExtendedKeyUsageOID.SERVER_AUTH, spec.server),
            (ExtendedKeyUsageOID.CLIENT_AUTH, spec.client),
        )
        if on
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_service_account_keys() -> tuple[bytes, bytes]:
    """RSA key pair that signs ServiceAccount tokens: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _pem_key(key), public


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

    ca_cert, ca_key = make_ca(now)
    put("ca.crt", ca_cert)
    put("ca.key", ca_key)
    for spec in cert_specs(node_name, node_ip, service_ip):
        cert, key = make_leaf(spec, ca_cert, ca_key, now)
        put(f"{spec.name}.crt", cert)
        put(f"{spec.name}.key", key)
    sa_key, sa_pub = make_service_account_keys()
    put("sa.key", sa_key)
    put("sa.pub", sa_pub)
