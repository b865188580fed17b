"""`sidecar:prev` (the previous agent, localcluster/imagebuilder/prevagent.py) on the cluster under test,
built on demand for e2e/test_agent_skew.py: nothing else in the suite needs it or the history it is
built from.

It takes the route of the suite's other images (clusterkit/images.py): on the local cluster it is pushed to
the node's registry and the kubelet pulls it by the registry's name; on kind (`make e2e-kind`, which tells the
suite its kind binary and cluster) it is built with Docker and loaded; on any other cluster it is
expected under its plain name, like the rest. A missing commit raises prevagent.MissingCommitError, whose
message says what to run.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping

from localcluster import dockerimages, nodeimages, registry
from localcluster import settings as s
from localcluster.imagebuilder import builder, prevagent

log = logging.getLogger("e2e")

PLAIN = dockerimages.PREV_IMAGE  # sidecar-hotupgrade/sidecar:prev, the name kind loads it under


def reference(endpoints: registry.Endpoints | None) -> str:
    """The name pods use: the public registry instance's on the local cluster, else the plain one. Pure."""
    return PLAIN if endpoints is None else registry.image_ref(endpoints, PLAIN)


def provide(endpoints: registry.Endpoints | None, environ: Mapping[str, str] = os.environ) -> str:
    """Build (cached) and deliver the image where the cluster pulls it from; its reference."""
    if endpoints is not None:
        archive = prevagent.ensure_image()
        the_plan = nodeimages.plan(nodeimages.read_built([archive]))
        registry.push(endpoints, [b.archive for b in the_plan.pushed])
        # A node that pulled an older `prev` under this name would keep running it (IfNotPresent).
        present = builder.present_images(s.CONTAINERD_SOCKET)
        nodeimages.remove_records(s.CONTAINERD_SOCKET, nodeimages.stale_refs(present, the_plan, endpoints))
    elif environ.get("E2E_KIND_CLUSTER"):
        tag = dockerimages.build_prev_image(environ, offline=bool(environ.get("E2E_KIND_OFFLINE")))
        argv = [
            environ.get("E2E_KIND") or "kind",
            "load",
            "docker-image",
            "--name",
            environ["E2E_KIND_CLUSTER"],
            tag,
        ]
        log.info("event=kind-load image=%s", tag)
        subprocess.run(argv, env=dict(environ), check=True)
    else:
        log.info("event=prev-image-assumed image=%s", PLAIN)
    return reference(endpoints)
