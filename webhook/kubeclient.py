"""The one kubeconfig loader of the project: the controller, the `hotupgrade` CLI, the webhook's
certificate loop and the e2e suite all get their Kubernetes API client here.

It lives in webhook/ because webhook/ must not import controller/, while controller/ may import webhook/.
Each caller says where to look when no kubeconfig file is named, as each did before.
"""

from collections.abc import Sequence
from typing import Literal

from kubernetes import client, config

Fallback = Literal["in-cluster", "kubeconfig"]
IN_CLUSTER: tuple[Fallback, ...] = ("in-cluster",)  # the controller in its pod
KUBECONFIG: tuple[Fallback, ...] = ("kubeconfig",)  # the CLI on a workstation, like kubectl
IN_CLUSTER_THEN_KUBECONFIG: tuple[Fallback, ...] = ("in-cluster", "kubeconfig")  # the certs loop


def load_api_client(
    kubeconfig: str | None = None, *, fallbacks: Sequence[Fallback] = IN_CLUSTER
) -> client.ApiClient:
    """An ApiClient for the kubeconfig file `kubeconfig`; without one, from the first of `fallbacks` that
    loads: "in-cluster" (the pod's service account) or "kubeconfig" ($KUBECONFIG, else ~/.kube/config).

    Raises kubernetes.config.ConfigException (the last fallback's) when none loads.
    """
    if kubeconfig:
        api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return api
    error = config.ConfigException("no kubeconfig file named and no fallback to try")
    for fallback in fallbacks:
        try:
            if fallback == "in-cluster":
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config()  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            error = exc
            continue
        return client.ApiClient()
    raise error
