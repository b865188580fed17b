"""The registry's pure parts: image names, where each image goes, the configs it and containerd read."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import bcrypt
import pytest
import yaml

from localcluster import registry
from localcluster.registry import Endpoints, Instance
from localcluster.registryclient import archive_blobs, with_query

ENDPOINTS = Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p w:x", ca_file="/ca.crt"
)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("docker.io/sidecar-hotupgrade/sidecar:0.1.0", ("sidecar-hotupgrade/sidecar", "0.1.0")),
        ("registry.k8s.io/pause:3.10.1", ("pause", "3.10.1")),
        ("localhost:5000/a/b:t", ("a/b", "t")),
        ("localhost/a:t", ("a", "t")),
        ("sidecar-hotupgrade/demo-app:0.1.0", ("sidecar-hotupgrade/demo-app", "0.1.0")),
        ("10.0.0.1:5000/x:broken", ("x", "broken")),
    ],
)
def test_repository_and_tag(image: str, expected: tuple[str, str]) -> None:
    assert registry.repository_and_tag(image) == expected


@pytest.mark.parametrize("image", ["docker.io/a/b", "10.0.0.1:5000/a/b", "a@sha256:00"])
def test_repository_and_tag_needs_a_tag(image: str) -> None:
    with pytest.raises(ValueError, match="no tag"):
        registry.repository_and_tag(image)


def test_image_ref_public_and_private() -> None:
    sidecar = "docker.io/sidecar-hotupgrade/sidecar:0.1.1"
    assert registry.image_ref(ENDPOINTS, sidecar) == "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.1"
    assert (
        registry.image_ref(ENDPOINTS, sidecar, private=True)
        == "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1"
    )
    with pytest.raises(ValueError, match="only sidecar-hotupgrade/sidecar is private"):
        registry.image_ref(ENDPOINTS, "docker.io/sidecar-hotupgrade/demo-app:0.1.0", private=True)


def test_only_the_private_repository_goes_to_the_private_instance() -> None:
    assert registry.push_targets("docker.io/sidecar-hotupgrade/sidecar:0.1.0", ENDPOINTS) == [
        ("10.1.2.3:5000", False),
        ("10.1.2.3:5001", True),
    ]
    for other in ("docker.io/sidecar-hotupgrade/empty:0.1.0", "registry.k8s.io/pause:3.10.1"):
        assert registry.push_targets(other, ENDPOINTS) == [("10.1.2.3:5000", False)]


def test_only_the_private_instance_has_auth() -> None:
    state = Path("/state")
    public, private = (
        yaml.safe_load(
            registry.registry_config(address="10.1.2.3:5000", state_dir=state, instance=i, http_secret="s")
        )
        for i in (Instance("r-public", 5000, private=False), Instance("r-private", 5001, private=True))
    )
    assert "auth" not in public
    assert private["auth"] == {"htpasswd": {"realm": registry.REALM, "path": "/state/htpasswd"}}
    for doc, name in ((public, "r-public"), (private, "r-private")):
        assert doc["http"]["addr"] == "10.1.2.3:5000"
        assert doc["http"]["tls"] == {"certificate": "/state/tls.crt", "key": "/state/tls.key"}
        # Separate stores: two processes never write one filesystem tree.
        assert doc["storage"]["filesystem"]["rootdirectory"] == f"/state/{name}/storage"


def test_hosts_toml_names_https_and_the_ca() -> None:
    doc = tomllib.loads(registry.hosts_toml("10.1.2.3:5001", Path("/s/ca.crt")))
    assert doc["server"] == "https://10.1.2.3:5001"
    assert doc["host"]["https://10.1.2.3:5001"]["ca"] == "/s/ca.crt"
    assert "pull" in doc["host"]["https://10.1.2.3:5001"]["capabilities"]


def test_htpasswd_line_is_bcrypt_of_the_password() -> None:
    user, hashed = registry.htpasswd_line("e2e", "secret").rstrip("\n").split(":", 1)
    assert user == "e2e"
    assert hashed.startswith("$2")
    assert bcrypt.checkpw(b"secret", hashed.encode())
    assert not bcrypt.checkpw(b"secreT", hashed.encode())


def test_docker_config_json_for_the_private_instance_only() -> None:
    doc = json.loads(registry.docker_config_json(ENDPOINTS))
    assert list(doc["auths"]) == ["10.1.2.3:5001"]
    entry = doc["auths"]["10.1.2.3:5001"]
    assert base64.b64decode(entry["auth"]).decode() == "u:p w:x"
    assert (entry["username"], entry["password"]) == ("u", "p w:x")


def test_go_build_is_niced_one_package_at_a_time_and_stamped() -> None:
    argv = registry.go_build_argv(Path("/out"))
    assert argv[:3] == ["nice", "-n", "15"]
    assert argv[argv.index("-p") + 1] == "1"
    assert (
        f"{registry.REGISTRY_MODULE}/version.version={registry.REGISTRY_VERSION}"
        in argv[argv.index("-ldflags") + 1]
    )
    assert argv[-1] == "github.com/distribution/distribution/v3/cmd/registry"


def test_build_module_pins_the_version() -> None:
    gomod = (registry.BUILD_MODULE / "go.mod").read_text()
    assert f"require {registry.REGISTRY_MODULE} {registry.REGISTRY_VERSION}\n" in gomod
    gosum = (registry.BUILD_MODULE / "go.sum").read_text()
    assert f"{registry.REGISTRY_MODULE} {registry.REGISTRY_VERSION} h1:" in gosum


def test_with_query_keeps_the_upload_state() -> None:
    assert with_query("https://h/v2/r/blobs/uploads/u?_state=abc", digest="sha256:1") == (
        "https://h/v2/r/blobs/uploads/u?_state=abc&digest=sha256%3A1"
    )
    assert with_query("https://h/v2/r/blobs/uploads/", mount="sha256:1", **{"from": "a/b"}) == (
        "https://h/v2/r/blobs/uploads/?mount=sha256%3A1&from=a%2Fb"
    )


def test_archive_blobs_config_first_then_layers() -> None:
    manifest = {"config": {"digest": "c"}, "layers": [{"digest": "l1"}, {"digest": "l2"}]}
    assert [b["digest"] for b in archive_blobs({"manifests": [{}]}, manifest)] == ["c", "l1", "l2"]
    with pytest.raises(ValueError, match="exactly one"):
        archive_blobs({"manifests": [{}, {}]}, manifest)


def test_orphaned_instances_are_found_by_their_config_path() -> None:
    state = Path("/var/lib/x/registry")
    argvs = [
        (
            10,
            [
                "/cache/registry-v3.1.2/bin/registry",
                "serve",
                "/var/lib/x/registry/registry-public/config.yml",
            ],
        ),
        (11, ["/cache/registry-v3.1.2/bin/registry", "serve", "/tmp/other/registry-public/config.yml"]),
        (12, ["/usr/bin/python3", "serve", "/var/lib/x/registry/config.yml"]),
        (13, ["/cache/registry-v3.1.2/bin/registry", "garbage-collect", "/var/lib/x/registry/c.yml"]),
        (14, []),
    ]
    assert registry.serving_from(argvs, state) == [10]
