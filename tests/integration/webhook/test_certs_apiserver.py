"""Self-signed mode against a real kube-apiserver: the Secret, the caBundle patches, renewal, races, CLI.

Each test gets a throwaway namespace and its own pair of (cluster-scoped) webhook configurations whose
selectors match nothing, so they never touch another test's pods; all are deleted afterwards. Renewal
is made due through the config (short validity, long renewBefore), as an operator could.
"""

import base64
import datetime
import logging
import os
import secrets
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.apiserver import reachable_kubeconfig
from tests.integration.webhook.conftest import CLI, START_TIMEOUT, TLSFiles, WebhookProcess
from webhook import certs_k8s, logs
from webhook.certs import new_ca, service_dns_names
from webhook.certs_k8s import KubernetesCertificates, reconcile
from webhook.config import Certificates, parse_config
from webhook.kubeclient import load_api_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVICE = "hu-webhook"
SECRET = "hu-webhook-tls"
HELM_LABELS = {"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "sidecar-hotupgrade-0.1.0"}
# What the test configurations' webhooks carry (harmless: their selectors match nothing) and the config says.
FAILURE_POLICY = {"mutate": "Ignore", "validate": "Ignore"}
HELM_ANNOTATIONS = {"meta.helm.sh/release-name": "hu", "meta.helm.sh/release-namespace": "hu-system"}

# Validities in days. INITIAL: nothing due for a while. RENEW_SERVING: the serving cert (10 days left)
# is inside renewBefore, the CA (20 days left) is not. ROTATE_CA: the CA is inside renewBefore too.
INITIAL = {"validityDays": 10, "caValidityDays": 20, "renewBeforeDays": 1}
RENEW_SERVING = {"validityDays": 20, "caValidityDays": 20, "renewBeforeDays": 15}
ROTATE_CA = {"validityDays": 30, "caValidityDays": 30, "renewBeforeDays": 25}
# After a rotation under ROTATE_CA, 21 days on: the previous CA (20 days) has expired, nothing else is due.
AFTER_PREVIOUS_CA_EXPIRED = {"validityDays": 30, "caValidityDays": 30, "renewBeforeDays": 1}


@pytest.fixture(scope="module")
def kubeconfig() -> str:
    return reachable_kubeconfig()


@dataclass
class Cluster:
    """A namespace and a uniquely named pair of webhook configurations, with typed API handles."""

    kubeconfig: str
    api: client.ApiClient
    namespace: str

    # Typed as Any: the tests read optional fields (metadata, webhooks) that they have just written.
    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @property
    def admission(self) -> Any:
        return client.AdmissionregistrationV1Api(self.api)

    @property
    def mutating(self) -> str:
        return f"{self.namespace}-injector"

    @property
    def validating(self) -> str:
        return f"{self.namespace}-guard"

    def certificates_section(self, validity: dict[str, int]) -> dict[str, Any]:
        return {
            "mode": "self-signed",
            "secretName": SECRET,
            "secretNamespace": self.namespace,
            "serviceName": SERVICE,
            "serviceNamespace": self.namespace,
            "mutatingWebhookConfiguration": self.mutating,
            "validatingWebhookConfiguration": self.validating,
            **validity,
        }

    def config_document(self, validity: dict[str, int]) -> dict[str, Any]:
        """The webhook's config file: this test's certificates, and the configurations' failurePolicy."""
        return {"certificates": self.certificates_section(validity), "failurePolicy": FAILURE_POLICY}

    def settings(self, validity: dict[str, int]) -> Certificates:
        """The certificates section as the webhook would parse it from its config file."""
        return parse_config(self.config_document(validity)).certificates

    def store(self, validity: dict[str, int]) -> KubernetesCertificates:
        """A replica's view: its own ApiClient, as a separate process would have."""
        policy = parse_config(self.config_document(validity)).failure_policy
        return KubernetesCertificates(
            load_api_client(self.kubeconfig), self.settings(validity), failure_policy=policy
        )

    def secret(self) -> Any:
        return self.core.read_namespaced_secret(SECRET, self.namespace)

    def secret_data(self) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in (self.secret().data or {}).items()}

    def resource_versions(self) -> tuple[str, str, str]:
        """Secret, mutating and validating configuration resourceVersions."""
        return (
            self.secret().metadata.resource_version,
            self.admission.read_mutating_webhook_configuration(self.mutating).metadata.resource_version,
            self.admission.read_validating_webhook_configuration(self.validating).metadata.resource_version,
        )

    def ca_bundles(self) -> list[bytes]:
        """caBundle of every webhook of both configurations, decoded, as the apiserver holds them."""
        found = []
        mutating = self.admission.read_mutating_webhook_configuration(self.mutating)
        validating = self.admission.read_validating_webhook_configuration(self.validating)
        for webhook in [*(mutating.webhooks or []), *(validating.webhooks or [])]:
            encoded = webhook.client_config.ca_bundle
            found.append(base64.b64decode(encoded) if encoded else b"")
        return found

    def ca_bundle(self) -> bytes:
        """The one caBundle all four webhooks agree on."""
        bundles = self.ca_bundles()
        assert len(bundles) == 4
        assert all(b == bundles[0] for b in bundles), "webhooks disagree on caBundle"
        return bundles[0]


def _webhook(name: str, namespace: str, path: str) -> dict[str, Any]:
    """A webhook entry that can never be called: its selectors match no namespace and no pod."""
    return {
        "name": name,
        "clientConfig": {"service": {"name": SERVICE, "namespace": namespace, "path": path}},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 1,
        "namespaceSelector": {"matchLabels": {"hotupgrade.io/certs-test": namespace}},
        "objectSelector": {"matchLabels": {"hotupgrade.io/certs-test": namespace}},
        "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ],
    }


@pytest.fixture
def cluster(kubeconfig: str) -> Iterator[Cluster]:
    api = load_api_client(kubeconfig)
    made = Cluster(kubeconfig, api, f"hu-certs-{secrets.token_hex(4)}")
    admission = made.admission
    made.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=made.namespace)))
    try:
        # Two webhooks each: caBundle must land in every one of them.
        admission.create_mutating_webhook_configuration(
            {
                "metadata": {"name": made.mutating},
                "webhooks": [_webhook(f"{n}.inject.hotupgrade.io", made.namespace, "/mutate") for n in "ab"],
            }
        )
        admission.create_validating_webhook_configuration(
            {
                "metadata": {"name": made.validating},
                "webhooks": [_webhook(f"{n}.guard.hotupgrade.io", made.namespace, "/validate") for n in "ab"],
            }
        )
        yield made
    finally:
        for delete, name in (
            (made.admission.delete_mutating_webhook_configuration, made.mutating),
            (made.admission.delete_validating_webhook_configuration, made.validating),
        ):
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        made.core.delete_namespace(made.namespace)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """run_certs configures the webhook logger with the stderr of its time: undo that afterwards."""
    logger = logging.getLogger(logs.LOGGER_NAME)
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def verify_serving(cert_pem: bytes, ca_bundle: bytes, dns_names: list[str]) -> None:
    """Path-validate the serving certificate against the bundle for each name (raises if it fails)."""
    store = Store(x509.load_pem_x509_certificates(ca_bundle))
    leaf = x509.load_pem_x509_certificate(cert_pem)
    for name in dns_names:
        verifier = PolicyBuilder().store(store).time(now_utc()).build_server_verifier(x509.DNSName(name))
        verifier.verify(leaf, [])


def assert_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == x509.load_pem_x509_certificate(cert_pem).public_key()


def assert_consistent(cluster: Cluster) -> dict[str, bytes]:
    """The Secret's serving cert verifies, for every Service name, against the caBundle the API holds."""
    data = cluster.secret_data()
    bundle = cluster.ca_bundle()
    assert x509.load_pem_x509_certificates(bundle)[0] == x509.load_pem_x509_certificate(data["ca.crt"])
    verify_serving(data["tls.crt"], bundle, service_dns_names(SERVICE, cluster.namespace))
    assert_key_matches(data["tls.crt"], data["tls.key"])
    assert_key_matches(data["ca.crt"], data["ca.key"])
    return data


def test_first_run_stores_the_pair_and_publishes_the_ca(cluster: Cluster) -> None:
    assert cluster.ca_bundles() == [b""] * 4
    decided = reconcile(cluster.store(INITIAL), now=now_utc())
    assert decided.action == "create"

    data = assert_consistent(cluster)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert data["ca.crt"] == decided.bundle.ca.cert_pem
    assert data["tls.crt"] == decided.bundle.serving.cert_pem
    assert cluster.ca_bundle() == data["ca.crt"]
    assert cluster.secret().metadata.labels == {"app.kubernetes.io/managed-by": "hotupgrade-webhook"}
    # The check can fail: a name the cert was not issued for, and a CA that did not sign it.
    with pytest.raises(VerificationError):
        verify_serving(data["tls.crt"], cluster.ca_bundle(), [f"{SERVICE}.elsewhere.svc"])
    stranger = new_ca(now=now_utc(), validity=datetime.timedelta(days=1), common_name="stranger")
    with pytest.raises(VerificationError):
        verify_serving(data["tls.crt"], stranger.cert_pem, [f"{SERVICE}.{cluster.namespace}.svc"])


def test_a_second_run_with_nothing_due_changes_nothing(cluster: Cluster) -> None:
    reconcile(cluster.store(INITIAL), now=now_utc())
    before = cluster.resource_versions()
    decided = reconcile(cluster.store(INITIAL), now=now_utc())
    assert decided.action == "keep"
    assert cluster.resource_versions() == before


def test_a_secret_created_empty_by_helm_is_filled_and_keeps_its_metadata(cluster: Cluster) -> None:
    cluster.core.create_namespaced_secret(
        cluster.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET, labels=HELM_LABELS, annotations=HELM_ANNOTATIONS),
            type="Opaque",
        ),
    )
    assert reconcile(cluster.store(INITIAL), now=now_utc()).action == "create"
    assert_consistent(cluster)
    metadata = cluster.secret().metadata
    assert metadata.labels == HELM_LABELS
    assert HELM_ANNOTATIONS.items() <= (metadata.annotations or {}).items()


def test_a_serving_cert_near_expiry_is_renewed_with_the_same_ca(cluster: Cluster) -> None:
    reconcile(cluster.store(INITIAL), now=now_utc())
    old = cluster.secret_data()
    _, mutating_rv, validating_rv = cluster.resource_versions()

    decided = reconcile(cluster.store(RENEW_SERVING), now=now_utc())
    assert decided.action == "renew-serving"
    new = assert_consistent(cluster)
    assert (new["ca.crt"], new["ca.key"]) == (old["ca.crt"], old["ca.key"])
    assert new["tls.crt"] != old["tls.crt"] and new["tls.key"] != old["tls.key"]
    assert "ca-previous.crt" not in new
    # The CA did not change, so neither did the bundle: no patch was sent.
    assert cluster.ca_bundle() == old["ca.crt"]
    assert cluster.resource_versions()[1:] == (mutating_rv, validating_rv)
    expiry = x509.load_pem_x509_certificate(new["tls.crt"]).not_valid_after_utc
    assert expiry - now_utc() > datetime.timedelta(days=19)  # capped only by the CA (20 days)
    assert reconcile(cluster.store(RENEW_SERVING), now=now_utc()).action == "keep"


def test_a_ca_near_expiry_is_rotated_keeping_the_previous_ca_in_the_bundle(cluster: Cluster) -> None:
    reconcile(cluster.store(INITIAL), now=now_utc())
    old = cluster.secret_data()
    # Helm takes ownership of the Secret (adopt: labels and annotations added by another writer).
    cluster.core.patch_namespaced_secret(
        SECRET, cluster.namespace, {"metadata": {"labels": HELM_LABELS, "annotations": HELM_ANNOTATIONS}}
    )

    decided = reconcile(cluster.store(ROTATE_CA), now=now_utc())
    assert decided.action == "rotate-ca"
    new = assert_consistent(cluster)
    assert new["ca.crt"] != old["ca.crt"] and new["ca.key"] != old["ca.key"]
    assert new["ca-previous.crt"] == old["ca.crt"]
    assert cluster.ca_bundle() == new["ca.crt"] + old["ca.crt"]
    names = service_dns_names(SERVICE, cluster.namespace)
    # Either serving cert verifies against the published bundle: an apiserver may meet either while
    # replicas pick up the new files.
    verify_serving(old["tls.crt"], cluster.ca_bundle(), names)
    verify_serving(new["tls.crt"], new["ca.crt"], names)
    metadata = cluster.secret().metadata
    assert HELM_LABELS.items() <= metadata.labels.items()
    assert HELM_ANNOTATIONS.items() <= (metadata.annotations or {}).items()

    before = cluster.resource_versions()
    assert reconcile(cluster.store(ROTATE_CA), now=now_utc()).action == "keep"
    assert cluster.resource_versions() == before

    # Once the previous CA has expired it leaves the bundle and the Secret.
    later = now_utc() + datetime.timedelta(days=21)
    assert reconcile(cluster.store(AFTER_PREVIOUS_CA_EXPIRED), now=later).action == "drop-previous-ca"
    dropped = cluster.secret_data()
    assert "ca-previous.crt" not in dropped
    assert dropped["ca.crt"] == new["ca.crt"] and dropped["tls.crt"] == new["tls.crt"]
    assert cluster.ca_bundle() == new["ca.crt"]
    assert HELM_LABELS.items() <= cluster.secret().metadata.labels.items()


class RacingCertificates(KubernetesCertificates):
    """A replica whose reads are followed, once, by another writer's change; records API errors."""

    race: Callable[[], None] | None = None
    errors: ClassVar[list[int]] = []

    def read(self) -> tuple[Any, Any]:
        result = super().read()
        race, RacingCertificates.race = RacingCertificates.race, None
        if race is not None:
            race()  # between our read and our writes: a real concurrent change on the apiserver
        return result

    def write(self, bundle: Any, existing: client.V1Secret | None) -> None:
        try:
            super().write(bundle, existing)
        except ApiException as exc:
            RacingCertificates.errors.append(exc.status)
            raise

    def publish_ca_bundle(self, ca_bundle: bytes) -> int:
        try:
            return super().publish_ca_bundle(ca_bundle)
        except ApiException as exc:
            RacingCertificates.errors.append(exc.status)
            raise


def run_racing(
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    validity: dict[str, int],
    race: Callable[[], None],
) -> int:
    """`run_certs --once` in-process, with `race` run right after its first read of the Secret."""
    monkeypatch.setattr(RacingCertificates, "race", staticmethod(race))
    monkeypatch.setattr(RacingCertificates, "errors", [])
    monkeypatch.setattr(certs_k8s, "KubernetesCertificates", RacingCertificates)
    monkeypatch.setattr(certs_k8s, "_api_client", lambda: load_api_client(cluster.kubeconfig))
    config = parse_config(cluster.config_document(validity))
    return certs_k8s.run_certs(config, out_dir=tmp_path / "out", once=True)


def assert_files_match_secret(out: Path, data: dict[str, bytes]) -> None:
    assert (out / "tls.crt").read_bytes() == data["tls.crt"]
    assert (out / "tls.key").read_bytes() == data["tls.key"]


@pytest.mark.usefixtures("restore_logging")
def test_a_conflicting_ca_rotation_is_retried_and_converges(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two replicas rotate the CA at once: the loser's Secret update is a 409, it re-reads and follows."""
    reconcile(cluster.store(INITIAL), now=now_utc())
    old = cluster.secret_data()
    winner: list[str] = []

    def other_replica_rotates() -> None:
        winner.append(reconcile(cluster.store(ROTATE_CA), now=now_utc()).action)

    assert run_racing(cluster, monkeypatch, tmp_path, ROTATE_CA, other_replica_rotates) == 0
    assert winner == ["rotate-ca"]
    assert RacingCertificates.errors == [409]
    data = assert_consistent(cluster)
    assert data["ca-previous.crt"] == old["ca.crt"]
    # The loser had published its own CA before its write failed; the retry put the winner's back.
    assert cluster.ca_bundle() == data["ca.crt"] + old["ca.crt"]
    assert_files_match_secret(tmp_path / "out", data)


@pytest.mark.usefixtures("restore_logging")
def test_a_conflicting_create_is_retried_and_converges(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two replicas start at once: the second create is a 409 (AlreadyExists), it adopts the first's pair."""
    winner: list[str] = []

    def other_replica_creates() -> None:
        winner.append(reconcile(cluster.store(INITIAL), now=now_utc()).action)

    assert run_racing(cluster, monkeypatch, tmp_path, INITIAL, other_replica_creates) == 0
    assert winner == ["create"]
    assert RacingCertificates.errors == [409]
    data = assert_consistent(cluster)
    assert cluster.ca_bundle() == data["ca.crt"]
    assert_files_match_secret(tmp_path / "out", data)


@pytest.mark.usefixtures("restore_logging")
def test_a_secret_changed_under_a_renewal_is_retried_keeping_the_change(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Helm (say) relabels the Secret between our read and our update: 409, re-read, keep its labels."""
    reconcile(cluster.store(INITIAL), now=now_utc())
    old = cluster.secret_data()

    def helm_adopts() -> None:
        cluster.core.patch_namespaced_secret(
            SECRET, cluster.namespace, {"metadata": {"labels": HELM_LABELS, "annotations": HELM_ANNOTATIONS}}
        )

    assert run_racing(cluster, monkeypatch, tmp_path, RENEW_SERVING, helm_adopts) == 0
    assert RacingCertificates.errors == [409]
    data = assert_consistent(cluster)
    assert data["ca.crt"] == old["ca.crt"] and data["tls.crt"] != old["tls.crt"]
    metadata = cluster.secret().metadata
    assert HELM_LABELS.items() <= metadata.labels.items()
    assert HELM_ANNOTATIONS.items() <= (metadata.annotations or {}).items()
    assert_files_match_secret(tmp_path / "out", data)


@pytest.mark.usefixtures("restore_logging")
def test_a_configuration_changed_under_the_ca_bundle_patch_is_retried(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The resourceVersion test in the caBundle patch fails (422) when the configuration moved; retried."""
    admission = cluster.admission
    original_publish = KubernetesCertificates.publish_ca_bundle
    touched: list[str] = []

    def relabel_then_publish(self: KubernetesCertificates, ca_bundle: bytes) -> int:
        # Between publish's read of each configuration and its patch, someone re-applies the first one.
        real_read = self.admission.read_mutating_webhook_configuration

        def read_and_touch(name: str, **kwargs: Any) -> Any:
            current = real_read(name, **kwargs)
            if not touched:
                touched.append(name)
                admission.patch_mutating_webhook_configuration(
                    name, {"metadata": {"labels": {"touched": "yes"}}}
                )
            return current

        monkeypatch.setattr(self.admission, "read_mutating_webhook_configuration", read_and_touch)
        return original_publish(self, ca_bundle)

    monkeypatch.setattr(KubernetesCertificates, "publish_ca_bundle", relabel_then_publish)
    assert run_racing(cluster, monkeypatch, tmp_path, INITIAL, lambda: None) == 0
    assert touched == [cluster.mutating]
    assert RacingCertificates.errors == [422]
    data = assert_consistent(cluster)
    mutating = cluster.admission.read_mutating_webhook_configuration(cluster.mutating)
    assert mutating.metadata.labels == {"touched": "yes"}
    assert_files_match_secret(tmp_path / "out", data)


def certs_command(
    cluster: Cluster, tmp_path: Path, validity: dict[str, int], out: Path, *, once: bool = True
) -> list[str]:
    """`hotupgrade-webhook certs` with a config file naming this test's Secret and configurations."""
    config = tmp_path / f"config-{secrets.token_hex(2)}.yaml"
    config.write_text(yaml.safe_dump(cluster.config_document(validity)))
    return [str(CLI), "certs", "--config", str(config), "--out-dir", str(out), *(["--once"] if once else [])]


def kube_env(kubeconfig: str | Path) -> dict[str, str]:
    """The environment of a process outside any cluster, pointed at `kubeconfig`."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return env


def run_certs_cli(cluster: Cluster, tmp_path: Path, validity: dict[str, int], out: Path) -> None:
    done = subprocess.run(
        certs_command(cluster, tmp_path, validity, out),
        env=kube_env(cluster.kubeconfig),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def served_certificate(port: int, server_hostname: str, ca_bundle: bytes) -> bytes:
    """Handshake as the apiserver would (trusting only caBundle, checking the Service name); GET /readyz."""
    context = ssl.create_default_context(cadata=ca_bundle.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET /readyz HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert der is not None
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def wait_served(server: WebhookProcess, server_hostname: str, ca_bundle: bytes) -> bytes:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"webhook exited with {server.process.returncode}: {server.logs()}")
        try:
            return served_certificate(server.port, server_hostname, ca_bundle)
        except (ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_cli_certs_once_writes_files_that_serve_verifies_with_the_ca_bundle(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "tls"
    run_certs_cli(cluster, tmp_path, INITIAL, out)
    data = assert_consistent(cluster)
    assert_files_match_secret(out, data)
    assert stat.S_IMODE(os.stat(out / "tls.key").st_mode) == 0o600

    name = f"{SERVICE}.{cluster.namespace}.svc"
    files = TLSFiles(ca=out / "unused-ca.crt", cert=out / "tls.crt", key=out / "tls.key")
    (tmp_path / "serve").mkdir()
    server = WebhookProcess(tmp_path / "serve", files, None, [])
    try:
        assert wait_served(server, name, cluster.ca_bundle()) == data["tls.crt"]
        with pytest.raises(ssl.SSLCertVerificationError):
            served_certificate(server.port, f"{SERVICE}.elsewhere.svc", cluster.ca_bundle())

        # A CA rotation by the command: the running server serves the new pair on the next connection,
        # and it verifies against the bundle the apiserver now holds.
        run_certs_cli(cluster, tmp_path, ROTATE_CA, out)
        rotated = assert_consistent(cluster)
        assert rotated["ca.crt"] != data["ca.crt"]
        assert_files_match_secret(out, rotated)
        assert served_certificate(server.port, name, cluster.ca_bundle()) == rotated["tls.crt"]
        with pytest.raises(ssl.SSLCertVerificationError):
            served_certificate(server.port, name, data["ca.crt"])  # the old CA alone no longer does
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def test_a_configuration_that_appears_later_gets_its_ca_bundle_soon(cluster: Cluster, tmp_path: Path) -> None:
    """The sidecar (no --once) starts before the validating configuration exists (Helm creates it later,
    or it was recreated): it must publish once it appears, not only after checkIntervalSeconds."""
    validating = cluster.admission.read_validating_webhook_configuration(cluster.validating)
    body = {
        "metadata": {"name": cluster.validating},
        "webhooks": validating.to_dict(serialize=True)["webhooks"],
    }
    cluster.admission.delete_validating_webhook_configuration(cluster.validating)
    out = tmp_path / "tls"
    command = certs_command(cluster, tmp_path, {**INITIAL, "checkIntervalSeconds": 3600}, out, once=False)
    log = (tmp_path / "certs.log").open("wb")
    process = subprocess.Popen(command, env=kube_env(cluster.kubeconfig), stdout=log, stderr=log)
    try:
        wait_for((out / "tls.crt").exists, timeout=START_TIMEOUT, what="the certificate files")
        data = cluster.secret_data()
        mutating = cluster.admission.read_mutating_webhook_configuration(cluster.mutating)
        assert all(base64.b64decode(w.client_config.ca_bundle) == data["ca.crt"] for w in mutating.webhooks)
        cluster.admission.create_validating_webhook_configuration(body)
        wait_for(
            lambda: cluster.ca_bundles() == [data["ca.crt"]] * 4,
            timeout=60,
            what="caBundle in the configuration created after start",
        )
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


class StallingProxy:
    """A TCP proxy to the apiserver; connections accepted while `stalling` is set are never answered."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.stalling = threading.Event()
        self.stalling.set()
        self.held: list[socket.socket] = []
        self.sockets: list[socket.socket] = []
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.stalling.is_set():
                self.held.append(conn)  # a black hole: TCP is up, nothing ever comes back
                continue
            upstream = socket.create_connection(self.upstream, timeout=30)
            upstream.settimeout(None)
            self.sockets += [conn, upstream]
            for source, sink in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in [*self.held, *self.sockets]:
            sock.close()


def test_a_stalled_apiserver_connection_times_out_and_is_retried(cluster: Cluster, tmp_path: Path) -> None:
    """The apiserver stops answering mid-request (TCP stays up): the round must time out and retry,
    not block the renewal loop forever."""
    kubeconfig = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = StallingProxy((host, int(port)))
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    proxied = tmp_path / "kubeconfig"
    proxied.write_text(yaml.safe_dump(kubeconfig))
    out = tmp_path / "tls"
    log = (tmp_path / "certs.log").open("wb")
    command = certs_command(cluster, tmp_path, INITIAL, out)
    process = subprocess.Popen(command, env=kube_env(proxied), stdout=log, stderr=log)
    try:
        wait_for(lambda: bool(proxy.held), timeout=START_TIMEOUT, what="the first connection")
        proxy.stalling.clear()  # the apiserver is back for new connections; the first one stays dead
        assert process.wait(timeout=150) == 0, (tmp_path / "certs.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()
        proxy.close()
    assert len(proxy.held) == 1
    assert_files_match_secret(out, assert_consistent(cluster))
