"""The I/O half of `hotupgrade releases [NAME...]`: read releases, namespaces and pods, print the views of
controller.cli.releaseview. Read-only: the controller acts on releases, the CLI only shows them."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from controller.cli.commands import EXIT_FAILED, EXIT_OK
from controller.cli.releaseview import (
    POD_HEADERS,
    RELEASE_HEADERS,
    detail_lines,
    pod_rows,
    release_table,
)
from controller.cli.table import render_table
from controller.fleetcache import cached_release, namespace_labels
from controller.kube import Kube
from controller.release import InvalidReleaseError, parse_release
from controller.rollout import PodFacts, plan_fleet, pod_facts


def releases(kube: Kube, names: Sequence[str], *, out: TextIO) -> int:
    """The release table; for each release named, its conditions and the pods it governs."""
    raws, _ = kube.list_releases()
    by_name = {str(r["metadata"]["name"]): r for r in raws}
    missing = [n for n in names if n not in by_name]
    shown = [by_name[n] for n in names if n in by_name] if names else raws
    out.write(render_table(RELEASE_HEADERS, release_table(shown)) + "\n")
    for name in missing:
        out.write(f"hotupgrade: no SidecarRelease {name}\n")
    if not names:
        return EXIT_OK
    namespaces = {str(n["metadata"]["name"]): namespace_labels(n) for n in kube.list_namespaces()[0]}
    parsed = [r for r in (cached_release(raw).parsed for raw in raws) if r is not None]
    for name in names:
        if name not in by_name:
            continue
        raw = by_name[name]
        out.write(f"\n{name}\n")
        out.write("".join(f"  {line}\n" for line in detail_lines(raw)))
        try:
            release = parse_release(raw)
        except InvalidReleaseError as exc:
            out.write(f"  invalid spec: {exc}\n")
            continue
        pods: dict[str, PodFacts] = {}
        for namespace, labels in sorted(namespaces.items()):
            if release.spec.namespace_selector.matches(labels):
                for pod in kube.list_pods(namespace)[0]:
                    facts = pod_facts(pod)
                    pods[facts.key] = facts
        plan = plan_fleet(parsed, pods.values(), namespaces, now=datetime.now(UTC)).releases[name]
        rows = pod_rows(plan, pods)
        out.write(render_table(POD_HEADERS, rows) + "\n" if rows else "  no pods governed\n")
    return EXIT_FAILED if missing else EXIT_OK
