"""Serving TLS: TLS 1.2+ only, and a certificate rotated on disk is served without a restart."""

import datetime
import os
import socket
import ssl
import stat
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.webhook.conftest import (
    TLSFiles,
    WebhookProcess,
    client_context,
    start_webhook,
    write_tls,
)
from webhook.certs import plan
from webhook.certs_k8s import write_files
from webhook.config import Certificates

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def served_issuer(server: WebhookProcess, ca: Path) -> str:
    """Handshake with a client trusting `ca`; the issuer CN of the certificate the server presented."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        client_context(ca).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.issuer.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value)


def replace_atomically(source: Path, target: Path) -> None:
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebhookProcess]:
    server = start_webhook(tmp_path / "srv", tls=write_tls(tmp_path / "live", common_name="first CA"))
    yield server
    server.stop()


def handshake(server: WebhookProcess, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> str:
    context = client_context(server.tls.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is the point
        context.minimum_version = minimum
        context.maximum_version = maximum
    context.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def test_tls_below_1_2_is_refused(server: WebhookProcess) -> None:
    assert handshake(server, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(server, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError) as refused:
        handshake(server, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    # The server refused (an alert from its side), not our client failing to offer anything.
    assert "ALERT_PROTOCOL_VERSION" in str(refused.value), refused.value


def test_a_rotated_certificate_is_served_without_restart(server: WebhookProcess, tmp_path: Path) -> None:
    pid = server.process.pid
    assert served_issuer(server, server.tls.ca) == "first CA"
    rotated = write_tls(tmp_path / "next", common_name="second CA")
    # Key first, then cert, the way a Secret volume or `hotupgrade-webhook certs` swaps them.
    replace_atomically(rotated.key, server.tls.key)
    replace_atomically(rotated.cert, server.tls.cert)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert served_issuer(server, rotated.ca) == "second CA"
            break
        except ssl.SSLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises(ssl.SSLCertVerificationError):
        served_issuer(server, tmp_path / "live" / "ca.crt")  # the old CA no longer verifies it
    assert server.process.pid == pid and server.process.poll() is None


def test_a_half_written_pair_keeps_the_previous_certificate(server: WebhookProcess, tmp_path: Path) -> None:
    rotated: TLSFiles = write_tls(tmp_path / "next", common_name="second CA")
    replace_atomically(rotated.cert, server.tls.cert)  # new cert, old key: they do not match
    for _ in range(5):
        assert served_issuer(server, server.tls.ca) == "first CA"
    events = [e["event"] for e in server.log_events()]
    assert "tls-reload-failed" in events
    replace_atomically(rotated.key, server.tls.key)
    assert served_issuer(server, rotated.ca) == "second CA"


def test_self_signed_files_written_by_certs_are_served(server: WebhookProcess, tmp_path: Path) -> None:
    """The file side of self-signed mode: `write_files` swaps the pair in place, the server follows."""
    now = datetime.datetime.now(datetime.UTC)
    settings = Certificates(service_name="localhost-svc", service_namespace="test")
    bundle = plan(None, now=now, settings=settings).bundle
    out = server.tls.cert.parent
    assert write_files(bundle, out) is True
    assert write_files(bundle, out) is False  # unchanged: nothing rewritten
    assert stat.S_IMODE(os.stat(out / "tls.key").st_mode) == 0o600
    ca = tmp_path / "self-signed-ca.crt"
    ca.write_bytes(bundle.ca_bundle(now))
    # The serving cert names the Service, not localhost: verify the chain, then the name by hand.
    context = client_context(ca)
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost-svc.test.svc" in names.value.get_values_for_type(x509.DNSName)
