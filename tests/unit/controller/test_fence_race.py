"""The release e2e's fault replayed against the whole step machine: a rollback racing a take-over.

Timeline of the field case (pod relfleet-...-vfmzp, load 30-76): the controller sets standby b to the
target; the kubelet restarts b 3 s later, but the API server keeps publishing b's old container for
more than 27 s; at `kubelet_grace` (30 s) the controller sees an ignored image change and rolls back,
while b's new agent (its process started 28 s late) decides to take over; b's Envoy goes LIVE 4 s later
and tells a's to drain; then the kubelet applies the rollback and kills b. No Envoy, pod Ready.

Here the kubelet is tests/unit/controller/kubeletsim.py behind a status the API server publishes 40 s
late, and the two agents are a model of what agent/fence.py and agent/launch.py do: b's agent holds the
run-dir lock from its decision to LIVE, the serving agent answers fences by the same rules. With agents
that fence, some Envoy serves at every step whichever comes first; with agents before the fence
(schema 1.2), the rollback still leaves no Envoy, and the controller sees it and repairs forward
instead of reporting that the old Envoy kept serving.
"""

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import jsonpatch
import pytest

from controller.actions import Complete, Fail, FenceTakeOver, SetImage, WaitFor
from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.observed import AgentView, observe_pod
from controller.patches import patch_for
from controller.policy import Policy
from controller.record import Phase, Reason, UpgradeRecord
from controller.steps import next_step
from tests.unit.controller.kubeletsim import Kubelet
from tests.unit.controller.podfixtures import ADMITTED, EMPTY, NEW, T0, agent, raw_pod, unreachable

POLICY = Policy(step_timeout=60, drain_grace=30, poll_interval=1, pre_pull=False, kubelet_grace=30)
KUBELET_REACTS = 3.0  # the kubelet restarts a container this long after its spec changed
STATUS_LAG = 40.0  # the API server publishes the restarted container this much later
LIVE_AFTER = 4.0  # a deciding agent's Envoy is LIVE this long after its decision (lock held meanwhile)
DRAIN = 5.0  # a replaced Envoy exits this long after the new one went LIVE
AFTERWARDS = 60.0  # how long the pod is watched after the record is final


@dataclass
class NewAgent:
    """The agent in one instance of b's container running the target."""

    decides: datetime
    fenced: bool = False
    live: datetime | None = None  # when its Envoy goes LIVE; None: not decided yet, or fenced
    took: bool = False  # its Envoy went LIVE and took the listeners
    dead: datetime | None = None  # when its container was stopped

    def alive(self, at: datetime) -> bool:
        return self.dead is None or self.dead > at


@dataclass
class Pair:
    """Both agents and their Envoys, as the shared run dir and /status would show them."""

    fences: bool  # schema 1.4 agents: /fence and FENCE_FILE
    agent_delay: float  # from b's container start to its agent's decision
    status_slow: float = 2.0  # a just-started agent's /status times out this long after its decision
    a_envoy_until: datetime | None = None  # a's Envoy exits then (told to drain); None: runs on
    b_agents: dict[str, NewAgent] = field(default_factory=dict)  # by container ID
    fence: tuple[str, str] | None = None  # (slot, token)
    no_envoy: list[datetime] = field(default_factory=list)  # every look at which nothing served
    answers: list[int] = field(default_factory=list)  # what a's agent answered each fence request
    ended: datetime = T0  # when the run stopped watching

    def sync(self, kubelet: Kubelet, now: datetime) -> None:
        """Start the agent of a new b container, decide, go LIVE; a stopped container takes its Envoy."""
        for instance in kubelet.instances["hotupgrade-b"]:
            known = self.b_agents.get(instance.cid)
            if instance.image == NEW and known is None:
                delay = timedelta(seconds=self.agent_delay)
                self.b_agents[instance.cid] = NewAgent(decides=instance.started + delay)
            if known is not None and instance.finished is not None and known.dead is None:
                known.dead = instance.finished
        for b in self.b_agents.values():
            if b.live is None and not b.fenced and now >= b.decides and b.alive(b.decides):
                b.fenced = self.fence is not None and self.fence[0] == "b"  # read under the lock
                if not b.fenced:
                    b.live = b.decides + timedelta(seconds=LIVE_AFTER)
            if b.live is not None and not b.took and now >= b.live and b.alive(b.live):
                b.took = True
                if self._a_serves(b.live):  # a take-over: a's Envoy drains, then exits
                    self.a_envoy_until = b.live + timedelta(seconds=DRAIN)
        if kubelet.runs("hotupgrade-a", EMPTY) and self.a_envoy_until is None:
            self.a_envoy_until = now
        if self.serving(now) is None:
            self.no_envoy.append(now)

    def _a_serves(self, now: datetime) -> bool:
        return self.a_envoy_until is None or now < self.a_envoy_until

    def _live_b(self, now: datetime) -> NewAgent | None:
        for b in self.b_agents.values():
            if b.took and b.live is not None and b.live <= now and b.alive(now):
                return b
        return None

    def _replaced(self, now: datetime) -> bool:
        return any(b.took and b.live is not None and b.live <= now for b in self.b_agents.values())

    def _locked_by_b(self, now: datetime) -> bool:
        return any(
            b.live is not None and b.decides <= now < b.live and b.alive(now) for b in self.b_agents.values()
        )

    def serving(self, now: datetime) -> str | None:
        """The slot whose Envoy owns the listeners now, or None."""
        if self._live_b(now) is not None:
            return "b"
        return "a" if self._a_serves(now) and not self._replaced(now) else None

    def fence_request(self, action: FenceTakeOver, now: datetime) -> None:
        """POST/DELETE /fence on a's agent (agent/fencing.py's rules); the answer is kept."""
        assert self.fences and action.agent_slot == "a" and action.slot == "b"
        self.answers.append(self._answer(action, now))

    def _answer(self, action: FenceTakeOver, now: datetime) -> int:
        if self._locked_by_b(now):
            return 503
        if action.lift:
            self.fence = None
            return 200
        began = any(b.live is not None and b.alive(now) for b in self.b_agents.values())
        if began or self.serving(now) != "a":
            return 409
        self.fence = ("b", action.token)
        return 200

    def views(self, now: datetime) -> dict[str, AgentView]:
        owner = self.serving(now)
        replaced = self._replaced(now)
        a_phase = "serving" if owner == "a" else ("draining" if self._a_serves(now) else "retired")
        b_live = self._live_b(now)
        answers = timedelta(seconds=self.status_slow)  # before that, b's /status times out
        deciding = [
            b
            for b in self.b_agents.values()
            if b.decides + answers <= now and (b.dead is None or b.dead > now)
        ]
        b_phase = "standby"
        if b_live is not None:
            b_phase = "serving"
        elif deciding:
            b_phase = "failed" if deciding[-1].fenced else "taking-over"
        active = "b" if replaced else "a"
        slots = {"a": a_phase, "b": b_phase}
        a_role = "active" if owner == "a" else "retired"
        a = replace(
            agent("a", a_role, a_phase, active=active, slots=slots),
            fences=self.fences,
            fence_slot=self.fence[0] if self.fence else None,
            fence_token=self.fence[1] if self.fence else None,
        )
        if not deciding:
            return {"a": a, "b": unreachable("b")}
        error = "fenced: the controller rolled back this slot's take-over" if b_phase == "failed" else None
        b_role = "active" if b_live is not None else "standby"
        b = agent("b", b_role, b_phase, active=active, slots=slots, epoch=1, last_error=error)
        return {"a": a, "b": b}


def published(
    kubelet: Kubelet, lagging: dict[str, Any], now: datetime, changed: list[datetime]
) -> dict[str, Any]:
    """The pod as the API server shows it: spec and annotations now, status `STATUS_LAG` old after the
    first restart of b onto the target (the field case), else the kubelet's own."""
    pod = copy.deepcopy(kubelet.pod)
    if changed and now < changed[0] + timedelta(seconds=STATUS_LAG):
        pod["status"] = copy.deepcopy(lagging)
    return pod


def run(pair: Pair) -> tuple[UpgradeRecord, list[str], Pair]:
    """Annotate the target and run controller, kubelet and agents to a terminal record; the Events."""
    kubelet = Kubelet.running(
        raw_pod(target=None), ("hotupgrade-a", "hotupgrade-b"), since=T0 - timedelta(hours=1)
    )
    kubelet.pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = NEW
    lagging = copy.deepcopy(kubelet.pod["status"])
    spec_changed: dict[str, datetime] = {}
    restarted: list[datetime] = []
    events: list[str] = []
    now = T0
    for _ in range(5000):
        for name in ("hotupgrade-a", "hotupgrade-b"):
            since = spec_changed.get(name)
            if since is not None and (now - since).total_seconds() >= KUBELET_REACTS:
                before = len(kubelet.instances[name])
                kubelet.sync(now)
                if name == "hotupgrade-b" and len(kubelet.instances[name]) > before and not restarted:
                    restarted.append(now)
                del spec_changed[name]
        pair.sync(kubelet, now)
        # No kubelet Events (not delivered, or no RBAC to read them): the status alone is judged.
        status = published(kubelet, lagging, now, restarted)
        observed = observe_pod(status, now=now, agents=pair.views(now), budget=ADMITTED, kubelet_events=())
        action = next_step(observed, POLICY)
        if isinstance(action, FenceTakeOver):
            pair.fence_request(action, now)
            now += timedelta(seconds=max(action.requeue_after, 0.25))
            continue
        assert isinstance(action, SetImage | WaitFor | Complete | Fail), action
        if action.event is not None:
            events.append(action.event.reason)
        ops = patch_for(action, kubelet.pod["metadata"]["resourceVersion"])
        if ops:
            patched: dict[str, Any] = jsonpatch.apply_patch(kubelet.pod, ops)
            patched["metadata"]["resourceVersion"] = str(int(kubelet.pod["metadata"]["resourceVersion"]) + 1)
            kubelet.pod = patched
        if isinstance(action, SetImage):
            spec_changed[action.container] = now
        if isinstance(action, Complete | Fail):
            end = now + timedelta(seconds=AFTERWARDS)
            while now < end:  # no controller any more: the kubelet applies what it still owes
                now += timedelta(seconds=0.25)
                for name in [n for n, since in spec_changed.items() if (now - since).total_seconds() >= 3]:
                    kubelet.sync(now)
                    del spec_changed[name]
                pair.sync(kubelet, now)
            pair.ended = now
            return action.record, events, pair
        now += timedelta(seconds=max(action.requeue_after, 0.25))
    raise AssertionError("the upgrade never ended")


# b's agent, from its container's start to its decision; FIELD: decided just before the controller's
# look at kubelet_grace, went LIVE just before the kubelet applied the rollback (the field timeline).
FIELD = 25.5
DELAYS = [20.0, 24.0, 25.0, 25.25, FIELD, 25.75, 26.0, 27.0, 28.0, 29.0, 30.0, 35.0]


def outcome(record: UpgradeRecord, events: list[str], pair: Pair) -> str:
    """What the pod was left with, checked against what the controller said."""
    serving = pair.serving(pair.ended)
    assert serving is not None, f"the pod was left without an Envoy: {record.message}"
    if "RolledBack" in events:
        assert record.phase is Phase.FAILED and serving == "a", "said 'old Envoy kept serving': it must"
    if record.phase is Phase.COMPLETED:
        assert serving == "b"
    return serving


@pytest.mark.parametrize("agent_delay", DELAYS)
def test_with_the_fence_some_envoy_serves_at_every_look(agent_delay: float) -> None:
    record, events, pair = run(Pair(fences=True, agent_delay=agent_delay))
    assert pair.no_envoy == [], f"no Envoy at {pair.no_envoy[:3]}"
    serving = outcome(record, events, pair)
    if serving == "a":
        assert all(not b.took for b in pair.b_agents.values())
        assert record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE and events[-1] == "RolledBack"


def test_the_field_case_replayed_the_take_over_wins_and_completes() -> None:
    # b's agent decides 1.5 s before the controller would roll back and does not answer /status yet:
    # the fence meets its lock (503), then its take-over; no rollback.
    record, events, pair = run(Pair(fences=True, agent_delay=FIELD))
    assert record.phase is Phase.COMPLETED, record.message
    assert 503 in pair.answers and 200 not in pair.answers, pair.answers
    assert "RolledBack" not in events and pair.fence is None


def test_a_take_over_that_has_not_begun_is_fenced_and_rolled_back_with_a_serving() -> None:
    # b's agent is a little slower: the fence lands first, b never starts an Envoy, a serves on.
    record, events, pair = run(Pair(fences=True, agent_delay=28.0))
    assert record.phase is Phase.FAILED and record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE, record
    assert pair.answers[0] == 200 and any(b.fenced for b in pair.b_agents.values()), pair.answers
    assert all(b.live is None for b in pair.b_agents.values()), "the fenced agent never spawned Envoy"
    assert events[-1] == "RolledBack"


@pytest.mark.parametrize("status_slow", [2.0, 8.0])
def test_without_the_fence_the_field_fault_happens_and_is_repaired_forward(status_slow: float) -> None:
    # 8 s: b's agent does not answer until after the kubelet stopped it; only its old Envoy's fate
    # (a told to drain) shows, and only if the controller does not believe the lagging status at once.
    record, events, pair = run(Pair(fences=False, agent_delay=FIELD, status_slow=status_slow))
    assert pair.no_envoy, "the model reproduces the field fault: the rollback killed b's LIVE Envoy"
    assert events[:3] == ["UpgradeStarted", "UpgradeFailed", "NoEnvoyAfterRollBack"], events
    assert record.phase is Phase.COMPLETED and pair.serving(pair.ended) == "b"


@pytest.mark.parametrize("agent_delay", DELAYS)
def test_without_the_fence_a_lost_envoy_is_said_and_repaired_forward(agent_delay: float) -> None:
    record, events, pair = run(Pair(fences=False, agent_delay=agent_delay))
    outcome(record, events, pair)
    if pair.no_envoy:  # the field fault: the rollback killed the Envoy that had taken over
        assert "NoEnvoyAfterRollBack" in events and "RolledBack" not in events, events
        assert record.phase is Phase.COMPLETED, record.message
