"""A kubelet for one pod's containers, as far as its crash-loop back-off goes, written from the upstream
source (Kubernetes v1.34.4) and not from controller.kubeletbackoff, so the two can disagree:

- kuberuntime_manager.go `computePodActions` + `SyncPod`: an image change kills the running container and
  starts the new one in the same sync, on the snapshot taken before the kill;
- `doBackOff`: the newest exited instance's FinishedAt; `IsInBackOffSince(key, F)` holds the start
  (CrashLoopBackOff), else `Next(key, F)`; no exited instance, neither;
- helpers.go `GetBackoffKey`: container name and image (pod and resources fixed here);
- client-go flowcontrol/backoff.go with kubelet.go's `HasExpiredFunc` (`F - lastUpdate > 600 s`), initial
  10 s, max 300 s, and `GC` (`now - lastUpdate > 600 s`) every housekeeping;
- kubelet_pods.go `convertToAPIContainerStatuses`: while a start is held the status shows the killed
  instance (its containerID, image, restartCount) as lastState under a CrashLoopBackOff Waiting state.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

INITIAL, MAX, EXPIRY = 10.0, 300.0, 600.0


@dataclass
class Instance:
    cid: str
    image: str
    started: datetime
    finished: datetime | None = None


@dataclass
class Entry:
    backoff: float
    last_update: datetime


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")  # metav1.Time: seconds


@dataclass
class Kubelet:
    """The pod's kubelet: `sync(now)` after every spec change and tick, `pod` carries its status."""

    pod: dict[str, Any]
    names: tuple[str, ...]
    instances: dict[str, list[Instance]] = field(default_factory=dict)  # oldest first
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # container -> CrashLoopBackOff message
    back_offs: list[tuple[str, str, datetime]] = field(default_factory=list)  # every start it held
    starts: int = 0

    @classmethod
    def running(cls, pod: dict[str, Any], names: tuple[str, ...], *, since: datetime) -> "Kubelet":
        kubelet = cls(pod=pod, names=names)
        for name in names:
            kubelet.instances[name] = [Instance(kubelet._cid(name), kubelet._spec_image(name), since)]
        kubelet._write_status()
        return kubelet

    def _cid(self, name: str) -> str:
        self.starts += 1
        return f"containerd://{name}-{self.starts}"

    def _spec_image(self, name: str) -> str:
        return str(next(c["image"] for c in self.pod["spec"]["containers"] if c["name"] == name))

    def sync(self, now: datetime) -> None:
        self._gc(now)
        for name in self.names:
            history = self.instances[name]
            current = history[-1]
            spec = self._spec_image(name)
            if current.finished is None and current.image == spec:
                continue
            # The snapshot before any kill: the newest exited instance.
            exited = [i for i in history if i.finished is not None]
            finished_at = exited[-1].finished if exited else None
            if current.finished is None:  # "definition changed, will be restarted"
                current.finished = now
            self._start(name, spec, now, finished_at)
        self._write_status()

    def _gc(self, now: datetime) -> None:
        for key in [k for k, e in self.entries.items() if (now - e.last_update).total_seconds() > EXPIRY]:
            del self.entries[key]

    def _start(self, name: str, image: str, now: datetime, finished_at: datetime | None) -> None:
        if finished_at is not None:
            key = (name, image)
            entry = self.entries.get(key)
            expired = entry is not None and (finished_at - entry.last_update).total_seconds() > EXPIRY
            if entry is not None and not expired and (now - finished_at).total_seconds() < entry.backoff:
                if name not in self.held:
                    self.back_offs.append((name, image, now))
                self.held[name] = f"back-off {entry.backoff:.0f}s restarting failed container={name}"
                return
            if entry is None or expired:
                self.entries[key] = Entry(INITIAL, now)
            else:
                self.entries[key] = Entry(min(entry.backoff * 2, MAX), now)
        self.held.pop(name, None)
        self.instances[name].append(Instance(self._cid(name), image, now))

    def _write_status(self) -> None:
        statuses = []
        for name in self.names:
            history = self.instances[name]
            current, before = history[-1], history[-2] if len(history) > 1 else None
            status: dict[str, Any] = {
                "name": name,
                "image": current.image,
                "imageID": f"{current.image}@sha256:{abs(hash(current.image)):x}",
                "containerID": current.cid,
                "restartCount": len(history) - 1,
            }
            if name in self.held:  # the killed instance, shown as lastState under the Waiting state
                status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": self.held[name]}}
                status["lastState"] = {"terminated": self._terminated(current)}
                status["ready"] = False
            else:
                status["state"] = {"running": {"startedAt": _stamp(current.started)}}
                status["ready"] = True
                if before is not None:
                    status["lastState"] = {"terminated": self._terminated(before)}
            statuses.append(status)
        statuses.append(
            {
                "name": "app",
                "image": "registry.local/demo-app:1",
                "containerID": "containerd://app",
                "restartCount": 0,
                "ready": True,
                "state": {"running": {"startedAt": "2026-11-26T11:00:00Z"}},
            }
        )
        ready = all(s["ready"] for s in statuses)
        self.pod["status"]["containerStatuses"] = statuses
        self.pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]

    @staticmethod
    def _terminated(instance: Instance) -> dict[str, Any]:
        assert instance.finished is not None
        return {
            "containerID": instance.cid,
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": _stamp(instance.started),
            "finishedAt": _stamp(instance.finished),
        }

    def runs(self, name: str, image: str) -> bool:
        current = self.instances[name][-1]
        return current.finished is None and current.image == image
