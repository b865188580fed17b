"""Ask a pod's agents how they are: `GET http://POD_IP:STATUS_PORT_<slot>/status` (docs/contract.md),
and ask the serving one to fence (or lift the fence of) the other slot's take-over: `POST /fence`.

A slot that does not answer is reported unreachable, never raised: the empty image has no agent, and
the step function decides what silence means.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import urllib3

from controller.observed import AgentView, agent_view
from webhook.contract import STATUS_PORT_A, STATUS_PORT_B

STATUS_PORTS: Mapping[str, int] = {"a": STATUS_PORT_A, "b": STATUS_PORT_B}


@dataclass(frozen=True)
class FenceAnswer:
    """What the agent said to a fence request: the HTTP code (None: no answer) and its body or error."""

    code: int | None
    detail: str


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

    def fence(self, pod_ip: str | None, agent_slot: str, *, slot: str, token: str, lift: bool) -> FenceAnswer:
        """`POST /fence` (or `DELETE /fence?slot=`) on `agent_slot`'s status port (docs/contract.md)."""
        if not pod_ip:
            return FenceAnswer(code=None, detail="pod has no IP")
        base = f"http://{pod_ip}:{self.ports[agent_slot]}/fence"
        try:
            if lift:
                response = self.http.request("DELETE", base, fields={"slot": slot})
            else:
                body = json.dumps({"slot": slot, "token": token}).encode()
                headers = {"Content-Type": "application/json"}
                response = self.http.request("POST", base, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            return FenceAnswer(code=None, detail=type(exc).__name__)
        return FenceAnswer(code=response.status, detail=response.data.decode(errors="replace")[:500])
