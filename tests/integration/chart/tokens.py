"""A client that acts as one ServiceAccount, to test the chart's RBAC and identities on a real API server."""

from typing import Any

from kubernetes import client


def as_service_account(admin: client.ApiClient, name: str, namespace: str) -> client.ApiClient:
    """A client authenticated with a fresh 10-minute token of ServiceAccount `namespace/name`."""
    core: Any = client.CoreV1Api(admin)
    request = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 600}}
    )
    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.verify_ssl = True
    cfg.api_key = {"authorization": request.status.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)
