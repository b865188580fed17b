"""Self-signed mode, the pure part: what to generate, when to renew, what goes into the caBundle.

The clock comes in as `now`; the Kubernetes I/O lives in webhook.certs_k8s. Keys are ECDSA P-256
(cheap handshakes, accepted by kube-apiserver). A CA rotation keeps the previous CA in the bundle until
it expires, so an apiserver that still holds the old bundle keeps trusting the serving certificate
and one holding the new bundle trusts both.
"""

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.config import Certificates

# Backdate certificates a little: the apiserver's clock may be behind ours.
CLOCK_SKEW = datetime.timedelta(minutes=5)
COMMON_NAME_MAX = 64

SECRET_CA_CERT = "ca.crt"
SECRET_CA_KEY = "ca.key"
SECRET_TLS_CERT = "tls.crt"
SECRET_TLS_KEY = "tls.key"
SECRET_PREVIOUS_CA_CERT = "ca-previous.crt"

Action = Literal["keep", "create", "renew-serving", "rotate-ca", "drop-previous-ca"]


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class CertBundle:
    """What the Secret holds: the CA, the serving pair, and the previous CA during a rotation."""

    ca: KeyPair
    serving: KeyPair
    previous_ca_pem: bytes | None = None

    def ca_bundle(self, now: datetime.datetime) -> bytes:
        """The caBundle for the webhook configurations: current CA, then the previous one while valid."""
        bundle = self.ca.cert_pem
        if self.previous_ca_pem is not None:
            previous = x509.load_pem_x509_certificate(self.previous_ca_pem)
            if previous.not_valid_after_utc > now:
                bundle += self.previous_ca_pem
        return bundle

    def to_secret_data(self) -> dict[str, bytes]:
        data = {
            SECRET_CA_CERT: self.ca.cert_pem,
            SECRET_CA_KEY: self.ca.key_pem,
            SECRET_TLS_CERT: self.serving.cert_pem,
            SECRET_TLS_KEY: self.serving.key_pem,
        }
        if self.previous_ca_pem is not None:
            data[SECRET_PREVIOUS_CA_CERT] = self.previous_ca_pem
        return data


@dataclass(frozen=True)
class Plan:
    """The bundle to store and serve, and what changed to get there."""

    action: Action
    bundle: CertBundle


def bundle_from_secret_data(data: Mapping[str, bytes] | None) -> CertBundle | None:
    """The bundle stored in a Secret, or None when it is missing or unusable (then start over)."""
    if not data:
        return None
    try:
        bundle = CertBundle(
            ca=KeyPair(data[SECRET_CA_CERT], data[SECRET_CA_KEY]),
            serving=KeyPair(data[SECRET_TLS_CERT], data[SECRET_TLS_KEY]),
            previous_ca_pem=data.get(SECRET_PREVIOUS_CA_CERT) or None,
        )
        ca_cert = bundle.ca.certificate()
        ca_key = serialization.load_pem_private_key(bundle.ca.key_pem, password=None)
        bundle.serving.certificate()
        serialization.load_pem_private_key(bundle.serving.key_pem, password=None)
        if bundle.previous_ca_pem is not None:
            x509.load_pem_x509_certificate(bundle.previous_ca_pem)
    except (KeyError, ValueError, TypeError):
        return None
    if ca_key.public_key() != ca_cert.public_key():
        return None
    return bundle


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names kube-apiserver may use to reach a webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signature (ECDSA handshakes), plus certificate and CRL signing for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def fit_common_name(name: str) -> str:
    """`name` cut to the 64 characters a CN may hold (RFC 5280 ub-common-name); the SANs carry names."""
    return name[:COMMON_NAME_MAX]


def new_ca(*, now: datetime.datetime, validity: datetime.timedelta, common_name: str) -> KeyPair:
    """A fresh self-signed CA that can sign only end-entity certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fit_common_name(common_name))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _private_key_pem(key))


def issue_serving(
    *, ca: KeyPair, dns_names: list[str], now: datetime.datetime, validity: datetime.timedelta
) -> KeyPair:
    """A serving certificate for `dns_names`, signed by `ca`, never outliving it."""
    return issue_leaf(ca=ca, common_name=dns_names[0], dns_names=dns_names, now=now, validity=validity)


def issue_leaf(
    *,
    ca: KeyPair,
    common_name: str,
    now: datetime.datetime,
    validity: datetime.timedelta,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.SERVER_AUTH,),
) -> KeyPair:
    """An end-entity certificate signed by `ca`, never outliving it: serving and/or client (`usages`);
    Kubernetes reads a client certificate's CN as the user and its organizations as groups."""
    ca_cert = ca.certificate()
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, fit_common_name(common_name)))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
    )
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _private_key_pem(key))


def renewal_due(cert: x509.Certificate, *, now: datetime.datetime, renew_before: datetime.timedelta) -> bool:
    """True once `now` is within `renew_before` of the certificate's expiry."""
    return now >= cert.not_valid_after_utc - renew_before


def _serving_matches(bundle: CertBundle, dns_names: list[str]) -> bool:
    serving = bundle.serving.certificate()
    if serving.issuer != bundle.ca.certificate().subject:
        return False
    try:
        serving.verify_directly_issued_by(bundle.ca.certificate())
        san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return sorted(san.get_values_for_type(x509.DNSName)) == sorted(dns_names)


def plan(current: CertBundle | None, *, now: datetime.datetime, settings: Certificates) -> Plan:
    """Decide what the Secret should hold at `now`: keep it, renew the serving cert, or rotate the CA."""
    dns_names = service_dns_names(settings.service_name, settings.service_namespace)
    validity = datetime.timedelta(days=settings.validity_days)
    renew_before = datetime.timedelta(days=settings.renew_before_days)
    if current is None:
        ca = new_ca(
            now=now,
            validity=datetime.timedelta(days=settings.ca_validity_days),
            common_name=_ca_name(settings),
        )
        serving = issue_serving(ca=ca, dns_names=dns_names, now=now, validity=validity)
        return Plan("create", CertBundle(ca=ca, serving=serving))
    if renewal_due(current.ca.certificate(), now=now, renew_before=renew_before):
        ca = new_ca(
            now=now,
            validity=datetime.timedelta(days=settings.ca_validity_days),
            common_name=_ca_name(settings),
        )
        serving = issue_serving(ca=ca, dns_names=dns_names, now=now, validity=validity)
        return Plan("rotate-ca", CertBundle(ca=ca, serving=serving, previous_ca_pem=current.ca.cert_pem))
    if renewal_due(current.serving.certificate(), now=now, renew_before=renew_before) or not _serving_matches(
        current, dns_names
    ):
        serving = issue_serving(ca=current.ca, dns_names=dns_names, now=now, validity=validity)
        return Plan(
            "renew-serving",
            CertBundle(ca=current.ca, serving=serving, previous_ca_pem=current.previous_ca_pem),
        )
    if current.previous_ca_pem is not None and current.ca_bundle(now) == current.ca.cert_pem:
        return Plan("drop-previous-ca", CertBundle(ca=current.ca, serving=current.serving))
    return Plan("keep", current)


def next_check(bundle: CertBundle, *, now: datetime.datetime, settings: Certificates) -> datetime.timedelta:
    """How long until something in `bundle` needs attention, capped by the configured check interval."""
    renew_before = datetime.timedelta(days=settings.renew_before_days)
    deadlines = [
        bundle.serving.certificate().not_valid_after_utc - renew_before,
        bundle.ca.certificate().not_valid_after_utc - renew_before,
    ]
    if bundle.previous_ca_pem is not None:
        deadlines.append(x509.load_pem_x509_certificate(bundle.previous_ca_pem).not_valid_after_utc)
    wait = min(deadlines) - now
    cap = datetime.timedelta(seconds=settings.check_interval_seconds)
    return max(datetime.timedelta(0), min(wait, cap))


def _ca_name(settings: Certificates) -> str:
    # The suffix must survive the CN cap so that operators can tell the CA from the serving cert.
    suffix = " webhook CA"
    return f"{settings.service_name}.{settings.service_namespace}"[: COMMON_NAME_MAX - len(suffix)] + suffix
