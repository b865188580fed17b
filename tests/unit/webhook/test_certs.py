"""Self-signed mode, pure part: what gets generated, when it is renewed, what goes into the caBundle."""

import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.certs import (
    CertBundle,
    bundle_from_secret_data,
    issue_serving,
    new_ca,
    next_check,
    plan,
    renewal_due,
    service_dns_names,
)
from webhook.config import Certificates

SETTINGS = Certificates(
    service_name="hu", service_namespace="ops", validity_days=30, ca_validity_days=90, renew_before_days=7
)
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def ca_certs(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def test_create_makes_a_ca_and_a_serving_cert_for_the_service_names() -> None:
    created = plan(None, now=T0, settings=SETTINGS)
    assert created.action == "create"
    ca = created.bundle.ca.certificate()
    serving = created.bundle.serving.certificate()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "hu",
        "hu.ops",
        "hu.ops.svc",
        "hu.ops.svc.cluster.local",
    ]
    eku = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert serving.not_valid_after_utc == T0 + 30 * DAY
    assert serving.not_valid_before_utc < T0  # backdated for clock skew
    assert ca.not_valid_after_utc == T0 + 90 * DAY
    assert ca_certs(created.bundle.ca_bundle(T0)) == [ca]


def test_a_fresh_bundle_is_kept_as_it_is() -> None:
    created = plan(None, now=T0, settings=SETTINGS).bundle
    kept = plan(created, now=T0 + 22 * DAY, settings=SETTINGS)
    assert kept.action == "keep" and kept.bundle == created


def test_the_serving_cert_is_renewed_before_expiry_with_the_same_ca() -> None:
    created = plan(None, now=T0, settings=SETTINGS).bundle
    renewed = plan(created, now=T0 + 23 * DAY, settings=SETTINGS)
    assert renewed.action == "renew-serving"
    assert renewed.bundle.ca == created.ca
    assert renewed.bundle.serving != created.serving
    renewed.bundle.serving.certificate().verify_directly_issued_by(created.ca.certificate())
    assert renewed.bundle.ca_bundle(T0 + 23 * DAY) == created.ca.cert_pem


def test_the_ca_is_rotated_before_expiry_keeping_the_previous_ca_in_the_bundle() -> None:
    created = plan(None, now=T0, settings=SETTINGS).bundle
    now = T0 + 83 * DAY
    rotated = plan(created, now=now, settings=SETTINGS)
    assert rotated.action == "rotate-ca"
    assert rotated.bundle.ca != created.ca
    assert rotated.bundle.previous_ca_pem == created.ca.cert_pem
    bundle = ca_certs(rotated.bundle.ca_bundle(now))
    assert bundle == [rotated.bundle.ca.certificate(), created.ca.certificate()]
    rotated.bundle.serving.certificate().verify_directly_issued_by(rotated.bundle.ca.certificate())
    # Once the old CA has expired it leaves the bundle and then the Secret.
    later = T0 + 91 * DAY
    assert ca_certs(rotated.bundle.ca_bundle(later)) == [rotated.bundle.ca.certificate()]
    dropped = plan(rotated.bundle, now=later, settings=SETTINGS)
    assert dropped.action == "drop-previous-ca" and dropped.bundle.previous_ca_pem is None


def test_a_serving_cert_never_outlives_its_ca() -> None:
    ca = new_ca(now=T0, validity=10 * DAY, common_name="ca")
    serving = issue_serving(ca=ca, dns_names=["x"], now=T0, validity=30 * DAY)
    assert serving.certificate().not_valid_after_utc == ca.certificate().not_valid_after_utc


def test_a_serving_cert_for_other_names_or_another_ca_is_reissued() -> None:
    created = plan(None, now=T0, settings=SETTINGS).bundle
    moved = Certificates(
        service_name="hu",
        service_namespace="elsewhere",
        validity_days=30,
        ca_validity_days=90,
        renew_before_days=7,
    )
    assert plan(created, now=T0, settings=moved).action == "renew-serving"
    other_ca = new_ca(now=T0, validity=90 * DAY, common_name="other")
    foreign = CertBundle(
        ca=created.ca,
        serving=issue_serving(
            ca=other_ca, dns_names=service_dns_names("hu", "ops"), now=T0, validity=30 * DAY
        ),
    )
    assert plan(foreign, now=T0, settings=SETTINGS).action == "renew-serving"


def test_renewal_due_at_the_boundary() -> None:
    cert = new_ca(now=T0, validity=10 * DAY, common_name="ca").certificate()
    assert not renewal_due(cert, now=T0 + 3 * DAY - datetime.timedelta(seconds=1), renew_before=7 * DAY)
    assert renewal_due(cert, now=T0 + 3 * DAY, renew_before=7 * DAY)


def test_secret_data_round_trips_and_garbage_means_start_over() -> None:
    created = plan(None, now=T0, settings=SETTINGS).bundle
    assert bundle_from_secret_data(created.to_secret_data()) == created
    assert bundle_from_secret_data(None) is None
    assert bundle_from_secret_data({"ca.crt": b"junk"}) is None
    broken = {
        **created.to_secret_data(),
        "tls.key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }
    assert bundle_from_secret_data(broken) is None
    other = plan(None, now=T0, settings=SETTINGS).bundle
    mismatched = {**created.to_secret_data(), "ca.key": other.ca.key_pem}
    assert bundle_from_secret_data(mismatched) is None


@pytest.mark.parametrize(
    ("days", "expected"), [(0, datetime.timedelta(hours=1)), (22, DAY + datetime.timedelta(0))]
)
def test_next_check_is_capped_by_the_interval_and_the_next_deadline(
    days: int, expected: datetime.timedelta
) -> None:
    created = plan(
        None, now=T0, settings=Certificates(**{**SETTINGS.__dict__, "check_interval_seconds": 86400 * 5})
    ).bundle
    settings = Certificates(
        **{**SETTINGS.__dict__, "check_interval_seconds": 3600 if days == 0 else 86400 * 5}
    )
    assert next_check(created, now=T0 + days * DAY, settings=settings) == expected


def test_names_longer_than_a_common_name_allows_still_get_certificates() -> None:
    # A Helm release `hotupgrade` in `hotupgrade-system` gives a 73-character FQDN; a CN holds 64.
    service, namespace = "hotupgrade-sidecar-hotupgrade-webhook", "hotupgrade-system"
    settings = Certificates(service_name=service, service_namespace=namespace)
    created = plan(None, now=T0, settings=settings)
    ca = created.bundle.ca.certificate()
    serving = created.bundle.serving.certificate()
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == service_dns_names(service, namespace)
    assert max(map(len, service_dns_names(service, namespace))) > 64
    ca_cn = ca.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert isinstance(ca_cn, str) and ca_cn.endswith(" webhook CA") and len(ca_cn) <= 64
