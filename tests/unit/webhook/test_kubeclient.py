"""The one kubeconfig loader: a named file wins, otherwise the caller's fallbacks in order.

No API server is contacted: loading a client only reads configuration.
"""

from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.config import kube_config

from webhook.kubeclient import IN_CLUSTER, IN_CLUSTER_THEN_KUBECONFIG, KUBECONFIG, load_api_client

KUBECONFIG_TEMPLATE = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: "t0ken"}}
contexts:
- name: x
  context: {{cluster: c, user: u}}
current-context: x
"""


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """No service account here, and the global default client configuration restored afterwards."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setattr(client.Configuration, "_default", client.Configuration._default)


def write_kubeconfig(path: Path, server: str) -> str:
    path.write_text(KUBECONFIG_TEMPLATE.format(server=server))
    return str(path)


def test_a_named_kubeconfig_wins_over_every_fallback(tmp_path: Path) -> None:
    named = write_kubeconfig(tmp_path / "named", "https://192.0.2.1:6443")
    for fallbacks in (IN_CLUSTER, KUBECONFIG, IN_CLUSTER_THEN_KUBECONFIG, ()):
        api = load_api_client(named, fallbacks=fallbacks)
        assert api.configuration.host == "https://192.0.2.1:6443"
        assert api.configuration.api_key == {"BearerToken": "Bearer t0ken"}


def test_outside_a_pod_the_in_cluster_fallback_fails_loudly() -> None:
    with pytest.raises(config.ConfigException, match="Service host/port is not set"):
        load_api_client(None)
    with pytest.raises(config.ConfigException, match="no kubeconfig file named"):
        load_api_client(None, fallbacks=())


def test_the_default_kubeconfig_is_the_next_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = write_kubeconfig(tmp_path / "default", "https://192.0.2.2:6443")
    # What $KUBECONFIG (or ~/.kube/config) names, as the client read it at import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", default)
    assert load_api_client(None, fallbacks=KUBECONFIG).configuration.host == "https://192.0.2.2:6443"
    api = load_api_client(None, fallbacks=IN_CLUSTER_THEN_KUBECONFIG)
    assert api.configuration.host == "https://192.0.2.2:6443", "not in a pod: the kubeconfig"
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "missing"))
    with pytest.raises(config.ConfigException):
        load_api_client(None, fallbacks=IN_CLUSTER_THEN_KUBECONFIG)
