"""Self-signed mode, the I/O shell: the Secret, the webhook configurations' caBundle, the served files.

One reconcile reads the Secret, asks webhook.certs.plan what it should hold, publishes the caBundle
*before* storing a certificate signed by a new CA (so the apiserver never sees a serving cert it cannot
verify for longer than its informer lag), stores the Secret with optimistic concurrency (a conflict
means another replica won: re-read next round), and writes tls.crt/tls.key atomically for
`serve` (which reloads them per connection). Every replica runs it; they converge on one Secret.
"""

import base64
import datetime
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from webhook import logs
from webhook.certs import CertBundle, Plan, bundle_from_secret_data, next_check, plan
from webhook.config import Certificates, FailurePolicies, WebhookConfig
from webhook.config_repair import Drift, describe, drift, repair_patch
from webhook.kubeclient import IN_CLUSTER_THEN_KUBECONFIG, load_api_client

RETRY_SECONDS = 10.0
CONFLICT_RETRY_SECONDS = 0.5
SETTLE_SECONDS = 0.2  # after a configuration changed, before the repair round
# Every API call is bounded: without it a connection the apiserver (or the network) stops answering
# blocks the renewal loop forever, and the certificate silently expires.
REQUEST_TIMEOUT_SECONDS = 30.0


class KubernetesCertificates:
    """Reads and writes the certificate Secret and patches caBundle; built on the official client."""

    def __init__(
        self, api: client.ApiClient, settings: Certificates, *, failure_policy: FailurePolicies
    ) -> None:
        self.api = api
        self.failure_policy = failure_policy
        self.core = client.CoreV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.settings = settings
        # Configurations the last publish could not find: retry soon, not after the check interval.
        self.missing: list[str] = []

    def read(self) -> tuple[CertBundle | None, client.V1Secret | None]:
        """The stored bundle (None if absent or unusable) and the Secret itself (None if absent)."""
        try:
            secret = self.core.read_namespaced_secret(
                self.settings.secret_name,
                self.settings.secret_namespace,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise
        data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
        return bundle_from_secret_data(data), secret

    def write(self, bundle: CertBundle, existing: client.V1Secret | None) -> None:
        """Create the Secret, or update `existing` as read (its resourceVersion makes a race a 409).

        An update keeps the Secret's metadata: the chart creates it empty so that Helm owns it, and
        Helm's labels and annotations must survive.
        """
        data: dict[str, bytes | str] = {
            key: base64.b64encode(value).decode() for key, value in bundle.to_secret_data().items()
        }
        if existing is None:
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=self.settings.secret_name,
                    namespace=self.settings.secret_namespace,
                    labels={"app.kubernetes.io/managed-by": "hotupgrade-webhook"},
                ),
                type="Opaque",
                data=data,
            )
            self.core.create_namespaced_secret(
                self.settings.secret_namespace, body, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
            return
        existing.data = data
        self.core.replace_namespaced_secret(
            self.settings.secret_name,
            self.settings.secret_namespace,
            existing,
            _request_timeout=REQUEST_TIMEOUT_SECONDS,
        )

    def publish_ca_bundle(self, ca_bundle: bytes) -> int:
        """Set caBundle, and the configured failurePolicy, on every webhook of both configurations;
        returns how many fields were changed (see webhook.config_repair)."""
        encoded = base64.b64encode(ca_bundle).decode()
        changed = 0
        self.missing = []
        targets: list[tuple[str, str, Any, Any]] = [
            (
                self.settings.mutating_webhook_configuration,
                self.failure_policy.mutate,
                self.admission.read_mutating_webhook_configuration,
                self.admission.patch_mutating_webhook_configuration,
            ),
            (
                self.settings.validating_webhook_configuration,
                self.failure_policy.validate,
                self.admission.read_validating_webhook_configuration,
                self.admission.patch_validating_webhook_configuration,
            ),
        ]
        for name, policy, read, patch in targets:
            try:
                current = read(name, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            except ApiException as exc:
                if exc.status == 404:
                    logs.event("webhook-configuration-missing", level=logging.WARNING, name=name)
                    self.missing.append(name)
                    continue
                raise
            document = self.api.sanitize_for_serialization(current)  # type: ignore[no-untyped-call]
            ops = repair_patch(document, ca_bundle=encoded, failure_policy=policy)
            if ops:
                found = drift(document, ca_bundle=encoded, failure_policy=policy)
                # A JSON patch list (sent as application/json-patch+json) with a test on resourceVersion.
                patch(name, ops, _request_timeout=REQUEST_TIMEOUT_SECONDS)
                changed += len(ops) - 1
                logs.event(
                    "webhook-configuration-repaired",
                    level=logging.INFO if _only_fills_ca(found) else logging.WARNING,
                    name=name,
                    fields=describe(found),
                )
        return changed


def _only_fills_ca(found: list[Drift]) -> bool:
    """Filling an empty caBundle is routine (install, CA rotation); anything else was an edit."""
    return all(d.field == "caBundle" for d in found)


class ConfigurationWatch:
    """Sets `changed` whenever either webhook configuration is written (by anyone, ourselves included),
    so that a tampered configuration is repaired within the watch's latency, not the check interval.

    One thread per kind, each a list then a watch on one name (RBAC's resourceNames allow list/watch
    with a `metadata.name` field selector). Every (re)list sets `changed`, since the object may have
    changed while no watch was open; a failure lists again after RETRY_SECONDS.
    """

    WATCH_SECONDS = 300

    def __init__(self, api: client.ApiClient, settings: Certificates) -> None:
        admission = client.AdmissionregistrationV1Api(api)
        self.changed = threading.Event()
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._run,
                args=(admission.list_mutating_webhook_configuration, settings.mutating_webhook_configuration),
                name="watch-mutating",
                daemon=True,
            ),
            threading.Thread(
                target=self._run,
                args=(
                    admission.list_validating_webhook_configuration,
                    settings.validating_webhook_configuration,
                ),
                name="watch-validating",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self, list_func: Any, name: str) -> None:
        selector = f"metadata.name={name}"
        while not self.stopped.is_set():
            try:
                # List, then watch from the list's resourceVersion, as client-go's reflector does. A watch
                # without one is, since Kubernetes 1.34 (WatchList on by default: apimachinery's
                # SetListOptionsDefaults), served only once the API server's cache of webhook
                # configurations has caught up with etcd's current revision, else ERROR 504 "Too large
                # resource version" after 3 s (apiserver storage/cacher). The cache of a rarely written
                # kind catches up only through etcd progress notifications, which etcd before 3.4.31 and
                # 3.5.13 cannot be asked for (storage/feature/feature_support_checker.go): on such a
                # cluster, busy with other writes, that watch never opened and nothing was repaired.
                listed = list_func(field_selector=selector, _request_timeout=REQUEST_TIMEOUT_SECONDS)
                self.changed.set()
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    list_func,
                    field_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=self.WATCH_SECONDS,
                    # Connect bounded; the read outlives the server's own timeout, never forever.
                    _request_timeout=(REQUEST_TIMEOUT_SECONDS, self.WATCH_SECONDS + REQUEST_TIMEOUT_SECONDS),
                )
                for event in stream:
                    if self.stopped.is_set():
                        return
                    logs.event(
                        "webhook-configuration-event", level=logging.DEBUG, name=name, type=event["type"]
                    )
                    self.changed.set()
            except ApiException as exc:
                if exc.status == 410:
                    continue  # the list's resourceVersion is too old by now: list again at once
                logs.event(
                    "webhook-configuration-watch-failed",
                    level=logging.WARNING,
                    name=name,
                    status=exc.status,
                    reason=exc.reason,
                )
                self.stopped.wait(RETRY_SECONDS)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                logs.event(
                    "webhook-configuration-watch-failed", level=logging.WARNING, name=name, error=str(exc)
                )
                self.stopped.wait(RETRY_SECONDS)


def reconcile(store: KubernetesCertificates, *, now: datetime.datetime) -> Plan:
    """One round: read, plan, publish the bundle, store the Secret. Raises ApiException on conflict."""
    current, secret = store.read()
    decided = plan(current, now=now, settings=store.settings)
    if decided.action == "create":
        # Nothing is served yet (the server waits for the files): store first, so that of two replicas
        # racing to create, only the one whose write won publishes its CA.
        store.write(decided.bundle, secret)
        changed = store.publish_ca_bundle(decided.bundle.ca_bundle(now))
    else:
        # Bundle first: it must trust a new CA before a certificate signed by it is served.
        changed = store.publish_ca_bundle(decided.bundle.ca_bundle(now))
        if decided.action != "keep":
            store.write(decided.bundle, secret)
    logs.event("certificates-reconciled", action=decided.action, ca_bundle_updates=changed)
    return decided


def write_files(bundle: CertBundle, out_dir: Path) -> bool:
    """Atomically replace tls.crt and tls.key in `out_dir` when they differ; True if anything changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = False
    # Key before cert: the server's reloader retries until the pair matches, whichever it sees first.
    for name, content, mode in (
        ("tls.key", bundle.serving.key_pem, 0o600),
        ("tls.crt", bundle.serving.cert_pem, 0o644),
    ):
        target = out_dir / name
        if target.exists() and target.read_bytes() == content:
            continue
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        changed = True
    return changed


def _api_client() -> client.ApiClient:
    """In a pod its service account; elsewhere (a developer's shell) the kubeconfig, like kubectl."""
    return load_api_client(fallbacks=IN_CLUSTER_THEN_KUBECONFIG)


def run_certs(config: WebhookConfig, *, out_dir: Path, once: bool) -> int:
    """Keep the self-signed certificate fresh and the webhook configurations intact until killed (or
    one round with `once`). A round runs at the check interval, and at once when a configuration changes."""
    logs.configure()
    if config.certificates.mode != "self-signed":
        logs.event("certs-not-self-signed", level=logging.ERROR, mode=config.certificates.mode)
        return 2
    api = _api_client()
    store = KubernetesCertificates(api, config.certificates, failure_policy=config.failure_policy)
    watching = None if once else ConfigurationWatch(api, config.certificates)
    if watching is not None:
        watching.start()
    while True:
        now = datetime.datetime.now(datetime.UTC)
        if watching is not None:
            watching.changed.clear()  # before the reads: a write after them wakes the next round
        try:
            decided = reconcile(store, now=now)
            if write_files(decided.bundle, out_dir):
                logs.event("certificate-files-written", dir=str(out_dir))
            wait = next_check(decided.bundle, now=now, settings=config.certificates).total_seconds()
            if store.missing:
                # Helm may create the configuration after this pod starts; until it has a caBundle the
                # apiserver cannot call the webhook, so do not wait a whole check interval for it.
                wait = min(wait, RETRY_SECONDS)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            logs.event("certificates-failed", level=logging.WARNING, error=str(exc))
            wait = RETRY_SECONDS
        except ApiException as exc:
            # Conflicts (another replica won, or a configuration changed under the patch) and 5xx: retry.
            logs.event("certificates-failed", level=logging.WARNING, status=exc.status, reason=exc.reason)
            conflict = exc.status in (409, 422)  # 422: the caBundle patch's resourceVersion test failed
            if once and not conflict and exc.status not in (500, 503, 504):
                return 1
            # A conflict means another replica just wrote: re-read at once and converge on its bundle.
            wait = CONFLICT_RETRY_SECONDS if conflict else RETRY_SECONDS
        else:
            if once:
                return 0
        pause = max(CONFLICT_RETRY_SECONDS, wait)
        if watching is None:
            time.sleep(pause)
        elif watching.changed.wait(pause):
            # Let a burst of writes (an apply touches both configurations) settle into one round.
            time.sleep(SETTLE_SECONDS)
