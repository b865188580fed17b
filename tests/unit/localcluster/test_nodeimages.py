"""Which image reaches the node how (imported or pushed), which records must leave containerd's store,
and containerd's config pointing CRI at the registry's hosts.toml files."""

from __future__ import annotations

import tomllib
from pathlib import Path

from localcluster import configs, nodeimages, registry
from localcluster import settings as s
from localcluster.imagebuilder import builder
from localcluster.nodeimages import Built

ENDPOINTS = registry.Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p", ca_file="/ca.crt"
)


def built(name: str, digest: str = "sha256:aa") -> Built:
    return Built(Path(f"/cache/{name.replace('/', '_')}.tar"), name, digest)


PAUSE = built(s.PAUSE_IMAGE)
WEBHOOK = built(f"{builder.WEBHOOK_REPO}:0.1.0")
SIDECAR = built(f"{builder.SIDECAR_REPO}:0.1.1", "sha256:new")
EMPTY = built(builder.EMPTY_IMAGE)
DEMO = built(builder.DEMO_IMAGE)


def test_pause_and_webhook_are_imported_and_everything_but_pause_is_pushed() -> None:
    the_plan = nodeimages.plan([PAUSE, EMPTY, DEMO, SIDECAR, WEBHOOK])
    assert the_plan.imported == (PAUSE, WEBHOOK)
    assert the_plan.pushed == (EMPTY, DEMO, SIDECAR, WEBHOOK)


def test_node_refs_of_a_private_image_name_both_instances() -> None:
    assert nodeimages.node_refs(SIDECAR, ENDPOINTS) == [
        "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.1",
        "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1",
    ]
    assert nodeimages.node_refs(DEMO, ENDPOINTS) == ["10.1.2.3:5000/sidecar-hotupgrade/demo-app:0.1.0"]


def test_stale_refs_are_pulls_at_another_digest_and_old_imports_of_pushed_images() -> None:
    the_plan = nodeimages.plan([PAUSE, WEBHOOK, SIDECAR, DEMO])
    present = {
        s.PAUSE_IMAGE: "sha256:old",  # imported: import_all replaces it, never removed here
        WEBHOOK.name: "sha256:old",  # imported as well
        SIDECAR.name: SIDECAR.digest,  # an import from before the registry: the kubelet must pull
        "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.1": "sha256:old",  # pulled before a re-push
        "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1": SIDECAR.digest,  # current: kept
        "10.1.2.3:5000/sidecar-hotupgrade/demo-app:0.1.0": DEMO.digest,  # current: kept
        "10.1.2.3:5000/sidecar-hotupgrade/webhook:0.1.0": "sha256:old",  # pulled before a re-push
        "example.test/other:1": "sha256:zz",  # not ours
    }
    assert sorted(nodeimages.stale_refs(present, the_plan, ENDPOINTS)) == sorted(
        [
            "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.1",
            SIDECAR.name,
            "10.1.2.3:5000/sidecar-hotupgrade/webhook:0.1.0",
        ]
    )


def test_nothing_is_stale_when_the_node_holds_what_was_pushed() -> None:
    the_plan = nodeimages.plan([PAUSE, SIDECAR])
    present = {
        s.PAUSE_IMAGE: PAUSE.digest,
        **dict.fromkeys(nodeimages.node_refs(SIDECAR, ENDPOINTS), "sha256:new"),
    }
    assert nodeimages.stale_refs(present, the_plan, ENDPOINTS) == []


def test_containerd_reads_registry_hosts_from_the_registry_state_dir() -> None:
    doc = tomllib.loads(configs.containerd_config())
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"] == {"config_path": str(registry.DEFAULT_LAYOUT.hosts_dir)}
    # Only config_path: the deprecated `mirrors`/`configs` tables stay unset.
    assert set(cri["registry"]) == {"config_path"}
    assert cri["sandbox_image"] == s.PAUSE_IMAGE


def test_containerd_config_names_the_hosts_dir_it_is_given() -> None:
    doc = tomllib.loads(configs.containerd_config(Path("/x/certs.d")))
    assert doc["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == "/x/certs.d"


def test_registry_files_under_the_cluster_dir_so_down_removes_them() -> None:
    assert registry.DEFAULT_LAYOUT.state_dir.is_relative_to(s.CLUSTER_DIR)
    assert registry.DEFAULT_LAYOUT.hosts_dir == s.REGISTRY_HOSTS_DIR
