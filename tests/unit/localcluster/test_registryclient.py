"""The registry client's pure parts: the content digest it checks what the registry stored against."""

from __future__ import annotations

import json
from pathlib import Path

from localcluster.imagebuilder import oci
from localcluster.registryclient import content_digest


def test_content_digest_is_sha256_of_the_bytes() -> None:
    assert content_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert content_digest(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_content_digest_is_how_the_image_builder_names_manifests_and_configs(tmp_path: Path) -> None:
    layer = oci.write_files_layer({"f": (b"x", 0o644)}, {}, tmp_path / "l.tar")
    config, manifest, index = oci.manifest_and_index(oci.ImageSpec("docker.io/a/b:1", ["/x"]), [layer])
    assert json.loads(index)["manifests"][0]["digest"] == content_digest(manifest)
    assert json.loads(manifest)["config"]["digest"] == content_digest(config)
    assert json.loads(manifest)["layers"][0]["digest"] == content_digest(layer.path.read_bytes())
