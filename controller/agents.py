"""Ask a pod's agents how they are: `GET http://POD_IP:STATUS_PORT_<slot>/status` (docs/contract.md).

A slot that does not answer is reported unreachable, never raised: the empty image has no agent, and
the step function decides what silence means.
"""

import json
from collections.abc import Iterable, Mapping

import urllib3

from controller.observed import AgentView, agent_view
from webhook.contract import STATUS_PORT_A, STATUS_PORT_B

STATUS_PORTS: Mapping[str, int] = {"a": STATUS_PORT_A, "b": STATUS_PORT_B}


class AgentClient:
    """Fetches `/status` from both slots; short timeouts, no retries (the reconciler requeues)."""

    def __init__(self, *, timeout: float = 2.0, ports: Mapping[str, int] = STATUS_PORTS) -> None:
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=4
        )
        self.ports = dict(ports)

    def fetch(self, pod_ip: str, slot: str) -> AgentView:
        url = f"http://{pod_ip}:{self.ports[slot]}/status"
        try:
            response = self.http.request("GET", url, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            return AgentView(slot=slot, reachable=False, error=type(exc).__name__)
        if response.status != 200:
            return AgentView(slot=slot, reachable=False, error=f"HTTP {response.status}")
        try:
            document = json.loads(response.data)
        except ValueError:
            return AgentView(slot=slot, reachable=False, error="status is not JSON")
        return agent_view(slot, document)

    def fetch_all(self, pod_ip: str | None, slots: Iterable[str] = ("a", "b")) -> dict[str, AgentView]:
        if not pod_ip:
            return {s: AgentView(slot=s, reachable=False, error="pod has no IP") for s in slots}
        return {s: self.fetch(pod_ip, s) for s in slots}
