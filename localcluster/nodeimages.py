"""How each built image reaches the node: imported into containerd, or pushed to the e2e registry.

The sandbox (pause) image is imported: containerd needs it before any pod and the kubelet never pulls it
here. The chart's default webhook image is imported too (the e2e releases run the chart's default image,
`docker.io/...`, which no registry of this machine serves), and also pushed. Every other image (sidecars,
empty, demo app) is only pushed: the kubelet pulls it from the registry as on a user's cluster, so a
sidecar swap waits for a real pull unless the controller pre-pulled it.

A re-push replaces a tag in the registry; a node that pulled the old image under that name would keep
running it (imagePullPolicy IfNotPresent), so such a record is removed from containerd's store. So are
the records of images this module no longer imports (the names imports used before the registry).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localcluster import host, registry
from localcluster import settings as s
from localcluster.imagebuilder import builder

log = logging.getLogger("localcluster")

# Repositories (registry host dropped) imported into containerd instead of only being pulled.
IMPORTED = (
    registry.repository_and_tag(s.PAUSE_IMAGE)[0],
    registry.repository_and_tag(f"{builder.WEBHOOK_REPO}:any")[0],
)
# ... and of those, the ones the registry does not need (nothing pulls them from it).
NOT_PUSHED = (registry.repository_and_tag(s.PAUSE_IMAGE)[0],)


@dataclass(frozen=True)
class Built:
    """One archive the image builder wrote: its path, its image name and its manifest digest."""

    archive: Path
    name: str
    digest: str

    @property
    def repository(self) -> str:
        """The repository, registry host dropped: `sidecar-hotupgrade/sidecar`."""
        return registry.repository_and_tag(self.name)[0]

    @property
    def tag(self) -> str:
        return registry.repository_and_tag(self.name)[1]


@dataclass(frozen=True)
class Plan:
    """What to do with a set of built images."""

    imported: tuple[Built, ...]
    pushed: tuple[Built, ...]


# ---- pure -------------------------------------------------------------------------------------------


def plan(built: Iterable[Built]) -> Plan:
    """Split the built images by IMPORTED / NOT_PUSHED (an image may be both imported and pushed)."""
    images = list(built)
    return Plan(
        imported=tuple(b for b in images if b.repository in IMPORTED),
        pushed=tuple(b for b in images if b.repository not in NOT_PUSHED),
    )


def node_refs(image: Built, endpoints: registry.Endpoints) -> list[str]:
    """The names a pushed image has on the node once pulled: from the public instance, and from the
    private one when its repository is private."""
    refs = [registry.image_ref(endpoints, image.name)]
    if image.repository == registry.PRIVATE_REPOSITORY:
        refs.append(registry.image_ref(endpoints, image.name, private=True))
    return refs


def stale_refs(present: Mapping[str, str], the_plan: Plan, endpoints: registry.Endpoints) -> list[str]:
    """Records to remove from containerd's store (present: name -> manifest digest): a pushed image
    pulled earlier at another digest, and an old import of an image that is now only pushed."""
    imported = {b.name for b in the_plan.imported}
    stale = []
    for image in the_plan.pushed:
        for ref in node_refs(image, endpoints):
            if ref in present and present[ref] != image.digest:
                stale.append(ref)
        if image.name not in imported and image.name in present:
            stale.append(image.name)
    return stale


# ---- shell ------------------------------------------------------------------------------------------


def read_built(archives: Iterable[Path]) -> list[Built]:
    """The name and digest the builder recorded beside each archive (`<archive>.ref`)."""
    built = []
    for archive in archives:
        name, digest = archive.with_suffix(".ref").read_text().split()
        built.append(Built(archive, name, digest))
    return built


def remove_records(socket: Path, refs: Iterable[str]) -> None:
    """`ctr images rm` (k8s.io namespace): the image record only; content in use by containers stays."""
    for ref in refs:
        log.info("event=node-image-removed ref=%s", ref)
        host.run(["ctr", f"--address={socket}", "--namespace=k8s.io", "images", "rm", ref], quiet=True)


def deliver(node_ip: str, archives: Iterable[Path], socket: Path = s.CONTAINERD_SOCKET) -> registry.Endpoints:
    """Import what the node needs imported, start/refill the registry with the rest, and drop records that
    would shadow the registry's images. containerd must run. Returns the registry's endpoints."""
    the_plan = plan(read_built(archives))
    builder.import_all(socket, [b.archive for b in the_plan.imported])
    endpoints = registry.up(node_ip, [b.archive for b in the_plan.pushed])
    remove_records(socket, stale_refs(builder.present_images(socket), the_plan, endpoints))
    return endpoints
