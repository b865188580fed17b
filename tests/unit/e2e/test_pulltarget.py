"""Fresh upgrade targets: the derived manifest and config, and the random layer's bytes and digests."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from clusterkit import images
from e2e import pulltarget
from localcluster import registry
from localcluster.imagebuilder import oci
from localcluster.registryclient import content_digest

ENDPOINTS = registry.Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p", ca_file="/ca.crt"
)
LAYER = pulltarget.ExtraLayer(digest="sha256:" + "c" * 64, size=1234, diff_id="sha256:" + "d" * 64)


def built_image(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of an image as the image builder writes them: two uncompressed layers."""
    layers = [oci.write_files_layer({f"f{i}": (b"x" * i, 0o644)}, {}, tmp_path / f"l{i}.tar") for i in (1, 2)]
    config, manifest, _ = oci.manifest_and_index(oci.ImageSpec("docker.io/a/b:1", ["/x"]), layers)
    return json.loads(manifest), json.loads(config)


def test_derived_image_is_the_base_with_the_layer_on_top(tmp_path: Path) -> None:
    manifest, config = built_image(tmp_path)
    before = copy.deepcopy((manifest, config))
    manifest_bytes, config_bytes = pulltarget.derive(manifest, config, LAYER)
    assert (manifest, config) == before  # the inputs are left alone
    new_manifest, new_config = json.loads(manifest_bytes), json.loads(config_bytes)
    # The manifest: the base's layers, then the gzip'ed one, and the new config by digest and size.
    assert new_manifest["layers"] == [
        *manifest["layers"],
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": LAYER.digest, "size": 1234},
    ]
    assert new_manifest["config"] == {
        "mediaType": manifest["config"]["mediaType"],
        "digest": content_digest(config_bytes),
        "size": len(config_bytes),
    }
    assert {k: v for k, v in new_manifest.items() if k not in ("layers", "config")} == {
        k: v for k, v in manifest.items() if k not in ("layers", "config")
    }
    # The config: its diff IDs list the uncompressed digest, one history entry per layer; nothing else moves.
    assert new_config["rootfs"]["diff_ids"] == [*config["rootfs"]["diff_ids"], LAYER.diff_id]
    assert len(new_config["history"]) == len(new_config["rootfs"]["diff_ids"])
    assert new_config["history"][:-1] == config["history"]
    assert {k: v for k, v in new_config.items() if k not in ("rootfs", "history")} == {
        k: v for k, v in config.items() if k not in ("rootfs", "history")
    }


def test_docker_manifests_get_dockers_layer_type_and_no_history_is_made_up() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "x", "size": 1},
        "layers": [],
    }
    config = {"rootfs": {"type": "layers", "diff_ids": []}}
    manifest_bytes, config_bytes = pulltarget.derive(manifest, config, LAYER)
    [layer] = json.loads(manifest_bytes)["layers"]
    assert layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert json.loads(config_bytes) == {"rootfs": {"type": "layers", "diff_ids": [LAYER.diff_id]}}


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        None,
    ],
)
def test_only_image_manifests_are_derived(media_type: str | None) -> None:
    manifest = {"schemaVersion": 2, "manifests": []} | ({"mediaType": media_type} if media_type else {})
    with pytest.raises(ValueError, match="not an image manifest"):
        pulltarget.derive(manifest, {"rootfs": {"diff_ids": []}}, LAYER)


def test_the_random_layer_is_one_file_of_random_bytes_gzipped(tmp_path: Path) -> None:
    payload = 300_000
    out = tmp_path / "layer.tar.gz"
    layer = pulltarget.write_random_layer(out, payload)
    stored = out.read_bytes()
    assert layer.size == len(stored)
    assert layer.digest == content_digest(stored)
    plain = gzip.decompress(stored)
    assert layer.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    with tarfile.open(out, "r:gz") as tar:
        [member] = tar.getmembers()
        assert (member.name, member.size, member.isreg()) == (pulltarget.PAYLOAD_PATH, payload, True)
        f = tar.extractfile(member)
        assert f is not None
        data = f.read()
    # Incompressible: deflate at its best gains nothing, so every pull moves at least the payload.
    assert len(gzip.compress(data, 9)) > payload
    assert layer.size > payload
    again = pulltarget.write_random_layer(tmp_path / "again.tar.gz", payload)
    assert again.digest != layer.digest and again.diff_id != layer.diff_id


def test_fresh_targets_sit_beside_the_private_target_and_are_allowed() -> None:
    base = images.suite_images(ENDPOINTS).sidecars[1]
    image = pulltarget.derived_reference(base, "0a1b2c3d")
    assert image == "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1-pull-0a1b2c3d"
    assert any(image.startswith(p) for p in images.suite_images(ENDPOINTS).allow_prefixes)
    assert registry.repository_and_tag(image) == (registry.PRIVATE_REPOSITORY, "0.1.1-pull-0a1b2c3d")
