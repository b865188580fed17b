"""Image pulls on the local cluster's node, for measuring what a pull costs an upgrade.

`forget_image` removes every record of an image from the node's containerd (tag, repo@digest and the
image-ID record CRI keeps), so the next start of a container with it makes the kubelet (or the pre-pull
pod) pull it again from the registry; blobs shared with images still present stay, as on a real node
(and containerd fetches no layer whose snapshot the node has: e2e/pulltarget.py makes targets that share
nothing new with the node). `blobs_on_node` lists what content the node holds. `pulls_of` reads back,
from the kubelet's Events, who pulled what and how long it took.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from localcluster import settings as s
from localcluster.imagebuilder import builder

# kubelet pkg/kubelet/images/image_manager.go (v1.34): the Normal "Pulled" events.
PULLED = re.compile(
    r'^Successfully pulled image "(?P<image>[^"]+)" in (?P<took>\S+) \((?P<waiting>\S+) including waiting\)'
    r"(?:\. Image size: (?P<size>\d+) bytes)?"
)
PRESENT = re.compile(r'^Container image "(?P<image>[^"]+)" already present on machine')
# client-go's EventAggregator (tools/record/events_cache.go): past 10 similar events of an object within
# 10 minutes, the message carries this prefix.
COMBINED = "(combined from similar events): "
GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Pull:
    """One kubelet pull (or "already present") of an image for one pod."""

    pod: str
    image: str
    seconds: float | None  # None: the image was already on the node, nothing was pulled
    size_bytes: int | None


def go_duration_seconds(text: str) -> float:
    """Go's time.Duration.String() (`1m2.5s`, `812.3ms`, `0s`) in seconds; ValueError otherwise."""
    parts = GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * UNIT_SECONDS[u] for n, u in parts)


def parse_pull(event: dict[str, Any]) -> Pull | None:
    """A Pull from a core/v1 Event (JSON) with reason Pulled, None for any other event."""
    if event.get("reason") != "Pulled":
        return None
    pod = str(event.get("involvedObject", {}).get("name", ""))
    message = str(event.get("message", "")).removeprefix(COMBINED)
    if match := PULLED.match(message):
        size = int(match["size"]) if match["size"] else None
        return Pull(pod, match["image"], round(go_duration_seconds(match["took"]), 3), size)
    if match := PRESENT.match(message):
        return Pull(pod, match["image"], None, None)
    return None


def event_versions(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """uid -> count of each Event: a repeated event is the same object with a higher count."""
    return {str(e["metadata"]["uid"]): int(e.get("count") or 1) for e in events}


def new_since(events: Iterable[dict[str, Any]], before: dict[str, int]) -> list[dict[str, Any]]:
    """The events that are new or were repeated since `before` (event_versions of an earlier list)."""
    return [e for e in events if before.get(str(e["metadata"]["uid"]), 0) < int(e.get("count") or 1)]


def pulls_of(events: Iterable[dict[str, Any]], image: str) -> list[Pull]:
    """The pulls of `image` among events, in the order given."""
    return [p for e in events if (p := parse_pull(e)) is not None and p.image == image]


def refs_to_forget(present: dict[str, str], image: str) -> list[str]:
    """Every record (name -> manifest digest) of the manifest `image` names now; [] when it is absent."""
    digest = present.get(image)
    if digest is None:
        return []
    return sorted(ref for ref, d in present.items() if d == digest)


def on_node(image: str) -> bool:
    """Whether the local node's containerd (k8s.io) holds a record named `image`."""
    return image in builder.present_images(s.CONTAINERD_SOCKET)


def blobs_on_node() -> set[str]:
    """Digests of the blobs in the local node's containerd content store (k8s.io). The CRI plugin keeps a
    pulled image's layers there after unpacking them (`discard_unpacked_layers = false`, configs.py)."""
    argv = ["ctr", f"--address={s.CONTAINERD_SOCKET}", "--namespace=k8s.io", "content", "ls", "-q"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


def forget_image(image: str) -> list[str]:
    """Remove the image's records from the local node's containerd (k8s.io); returns what was removed."""
    refs = refs_to_forget(builder.present_images(s.CONTAINERD_SOCKET), image)
    if refs:
        # --sync: wait until the garbage collector dropped the content no other image holds, so the next
        # pull downloads it again (without it the pull can race the collector and find everything there).
        argv = [
            "ctr",
            f"--address={s.CONTAINERD_SOCKET}",
            "--namespace=k8s.io",
            "images",
            "rm",
            "--sync",
            *refs,
        ]
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    return refs
