"""Listener parity across a take-over (docs/contract.md "Listener parity"): parse and compare, no I/O.

agent/launch.py reads the serving Envoy's `GET /listeners?format=json` before it spawns the new one and
the new one's once it is LIVE; this module turns both into sets of (name, address) and says what differs.
Envoy's admin lists active listeners only (admin/listeners_handler.cc), which at LIVE are every listener
of the initial configuration: listeners delivered by LDS during initialisation warm as part of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict


class ListenerJSON(TypedDict):
    """One listener in /status: its name and `host:port` (or `unix:PATH`)."""

    name: str
    address: str


class ListenerParityJSON(TypedDict):
    """`listeners` of GET /status."""

    parent_epoch: int
    epoch: int
    before: list[ListenerJSON]
    after: list[ListenerJSON]
    missing: list[ListenerJSON]
    added: list[ListenerJSON]
    same: bool


@dataclass(frozen=True, order=True)
class Listener:
    """A listener as the admin API names it and where it listens."""

    name: str
    address: str


class ListenersFormatError(ValueError):
    """The admin API answered /listeners with something else than Envoy's JSON."""


def _address(raw: Any) -> str:
    if "socket_address" in raw:
        socket = raw["socket_address"]
        host = str(socket.get("address", ""))
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{socket.get('port_value', 0)}"
    if "pipe" in raw:
        return f"unix:{raw['pipe']['path']}"
    return json.dumps(raw, sort_keys=True)


def parse_listeners(body: bytes) -> frozenset[Listener]:
    """`GET /listeners?format=json` -> its listeners (envoy.admin.v3.Listeners)."""
    try:
        statuses = json.loads(body).get("listener_statuses", [])
        return frozenset(Listener(str(s["name"]), _address(s["local_address"])) for s in statuses)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ListenersFormatError(f"unexpected /listeners: {error!r}") from None


@dataclass(frozen=True)
class ListenerParity:
    """The serving Envoy's listeners before a take-over and the new Envoy's after LIVE."""

    parent_epoch: int
    epoch: int
    before: frozenset[Listener]
    after: frozenset[Listener]

    @property
    def missing(self) -> list[Listener]:
        """Listeners the old Envoy had that the new one lacks (traffic to them is refused now)."""
        return sorted(self.before - self.after)

    @property
    def added(self) -> list[Listener]:
        """Listeners only the new Envoy has."""
        return sorted(self.after - self.before)

    @property
    def same(self) -> bool:
        return self.before == self.after

    def describe(self) -> str:
        """One line for the log and the history: what is missing and what was added."""
        if self.same:
            return f"{len(self.after)} listeners, the same as epoch {self.parent_epoch}"
        missing = ", ".join(f"{x.name}@{x.address}" for x in self.missing) or "none"
        added = ", ".join(f"{x.name}@{x.address}" for x in self.added) or "none"
        return f"listeners differ from epoch {self.parent_epoch}: missing {missing}; added {added}"

    def to_json(self) -> ListenerParityJSON:
        def listed(listeners: list[Listener]) -> list[ListenerJSON]:
            return [ListenerJSON(name=x.name, address=x.address) for x in listeners]

        return ListenerParityJSON(
            parent_epoch=self.parent_epoch,
            epoch=self.epoch,
            before=listed(sorted(self.before)),
            after=listed(sorted(self.after)),
            missing=listed(self.missing),
            added=listed(self.added),
            same=self.same,
        )


def record_json(epoch: int, listeners: frozenset[Listener]) -> dict[str, Any]:
    """LISTENERS_FILE: the serving Envoy's epoch and its listeners."""
    return {"epoch": epoch, "listeners": [{"name": x.name, "address": x.address} for x in sorted(listeners)]}


def parse_record(data: Any) -> tuple[int, frozenset[Listener]]:
    """LISTENERS_FILE back to (epoch, listeners); ListenersFormatError if it is not one."""
    try:
        epoch = data["epoch"]
        if not isinstance(epoch, int):
            raise TypeError("epoch is not an integer")
        return epoch, frozenset(Listener(str(x["name"]), str(x["address"])) for x in data["listeners"])
    except (KeyError, TypeError) as error:
        raise ListenersFormatError(f"unexpected listeners record: {error!r}") from None
