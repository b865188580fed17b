"""The e2e registry pair for real: distribution's pinned binary, TLS from a CA, basic auth on the private
instance, pushes from OCI archives, and the local cluster's containerd pulling through hosts.toml.

Each test module runs its own pair (own state dir, ports, CA and component names) so the cluster's pair,
if the lifecycle runs one, is never touched. The containerd tests use the cluster's containerd (skipped
when it is down; `python -m localcluster up` brings it up) in a namespace of their own, removed after.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from clusterkit import images as e2e_images
from e2e import pulltarget
from localcluster import host, nodeimages, pki, registry
from localcluster import settings as s
from localcluster.imagebuilder import oci
from localcluster.registry import Endpoints, Layout
from localcluster.registryclient import Registry, RegistryError
from webhook import certs

PUBLIC_REPO = "hotupgrade-registry-test/public"


# An archive with random content (so no store holds its layer yet), its name and manifest digest.
PushedImage = nodeimages.Built


@dataclass(frozen=True)
class Pair:
    layout: Layout
    endpoints: Endpoints
    public: PushedImage
    private: PushedImage


def make_image(directory: Path, name: str) -> PushedImage:
    directory.mkdir(parents=True, exist_ok=True)
    layer = oci.write_files_layer(
        {"data": (secrets.token_bytes(64 * 1024), 0o644)}, {}, directory / "layer.tar"
    )
    archive = directory / "image.tar"
    digest = oci.write_archive(oci.ImageSpec(name, ["/data"]), [layer], archive)
    archive.with_suffix(".ref").write_text(f"{name} {digest}\n")
    return PushedImage(archive, name, digest)


def archive_manifest(image: PushedImage) -> bytes:
    return oci_blob(image, image.digest)


def oci_blob(image: PushedImage, digest: str) -> bytes:
    with tarfile.open(image.archive) as tar:
        f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        assert f is not None
        return f.read()


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_open(address: str) -> bool:
    ip, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((ip, int(port)), timeout=2):
            return True
    except OSError:
        return False


def make_layout(root: Path, name: str, node_ip: str) -> Layout:
    ca_dir = root / "ca"
    ca_dir.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = certs.new_ca(now=now, validity=pki.CA_VALIDITY, common_name="test-ca")
    (ca_dir / "ca.crt").write_bytes(ca.cert_pem)
    (ca_dir / "ca.key").write_bytes(ca.key_pem)
    return Layout(
        state_dir=root / "state",
        public_port=free_port(node_ip),
        private_port=free_port(node_ip),
        name=name,
        pki_dir=ca_dir,
    )


@pytest.fixture(scope="module")
def node_ip() -> str:
    return host.node_ip()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, node_ip: str) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("registry")
    token = secrets.token_hex(4)
    public = make_image(root / "public", f"docker.io/{PUBLIC_REPO}:{token}")
    private = make_image(root / "private", f"docker.io/{registry.PRIVATE_REPOSITORY}:test-{token}")
    layout = make_layout(root, "registry-test", node_ip)
    registry.down(layout)  # processes a killed earlier run left under these names (stopped by recorded pid)
    try:
        endpoints = registry.up(node_ip, [public.archive, private.archive], layout)
        yield Pair(layout, endpoints, public, private)
    finally:
        registry.down(layout)


def get(pair: Pair, address: str, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
    accept = "application/vnd.oci.image.manifest.v1+json"
    return requests.get(
        f"https://{address}{path}",
        verify=pair.endpoints.ca_file,
        auth=auth,
        headers={"Accept": accept},
        timeout=10,
    )


def creds(pair: Pair) -> tuple[str, str]:
    return pair.endpoints.username, pair.endpoints.password


# ---- the registry over HTTP ---------------------------------------------------------------------------


def test_listens_on_the_node_ip_with_tls_from_the_ca(pair: Pair, node_ip: str) -> None:
    for address in (pair.endpoints.public, pair.endpoints.private):
        assert address.startswith(f"{node_ip}:")
        assert get(pair, address, "/v2/").status_code in (200, 401)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{address}/v2/", timeout=10)  # system CAs do not know ours


def test_public_manifests_and_blobs_need_no_credentials(pair: Pair) -> None:
    address = pair.endpoints.public
    assert get(pair, address, "/v2/").status_code == 200
    for image in (pair.public, pair.private):  # the private repository is also on the public instance
        resp = get(pair, address, f"/v2/{image.repository}/manifests/{image.tag}")
        assert resp.status_code == 200
        assert resp.content == archive_manifest(image)
        assert resp.headers["Docker-Content-Digest"] == image.digest


def test_private_instance_refuses_anonymous_and_wrong_credentials(pair: Pair) -> None:
    address = pair.endpoints.private
    image = pair.private
    path = f"/v2/{image.repository}/manifests/{image.tag}"
    for auth in (None, (pair.endpoints.username, "wrong"), ("nobody", pair.endpoints.password)):
        for p in ("/v2/", path, f"/v2/{image.repository}/blobs/{image.digest}"):
            resp = get(pair, address, p, auth)
            assert resp.status_code == 401, (p, auth, resp.status_code)
            assert resp.headers["WWW-Authenticate"] == f'Basic realm="{registry.REALM}"'


def test_private_pull_with_credentials_gets_what_was_pushed(pair: Pair) -> None:
    client = Registry(pair.endpoints.private, ca_file=pair.endpoints.ca_file, auth=creds(pair))
    image = pair.private
    media_type, raw = client.get_manifest(image.repository, image.tag)
    assert media_type == "application/vnd.oci.image.manifest.v1+json"
    assert raw == archive_manifest(image)
    for blob in [json.loads(raw)["config"], *json.loads(raw)["layers"]]:
        data = client.get_blob(image.repository, blob["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
        assert data == oci_blob(image, blob["digest"])


def test_private_instance_holds_only_the_private_repository(pair: Pair) -> None:
    private = get(pair, pair.endpoints.private, "/v2/_catalog", creds(pair)).json()["repositories"]
    public = get(pair, pair.endpoints.public, "/v2/_catalog").json()["repositories"]
    assert private == [registry.PRIVATE_REPOSITORY]
    assert sorted(public) == sorted([PUBLIC_REPO, registry.PRIVATE_REPOSITORY])


def test_push_then_pull_and_pushes_are_idempotent(pair: Pair, tmp_path: Path) -> None:
    image = make_image(tmp_path, f"docker.io/{registry.PRIVATE_REPOSITORY}:again-{secrets.token_hex(3)}")
    assert registry.push(pair.endpoints, [image.archive]) == 2  # public and private instance
    assert registry.push(pair.endpoints, [image.archive, pair.public.archive]) == 0
    client = Registry(pair.endpoints.private, ca_file=pair.endpoints.ca_file, auth=creds(pair))
    assert client.manifest_digest(image.repository, image.tag) == image.digest
    anonymous = Registry(pair.endpoints.private, ca_file=pair.endpoints.ca_file)
    with pytest.raises(RegistryError, match="HTTP 401"):
        anonymous.push_archive(image.archive, image.repository, "anonymous")


def test_digest_references_of_served_tags(pair: Pair) -> None:
    for image, private in ((pair.public, False), (pair.private, True)):
        ref = registry.image_ref(pair.endpoints, image.name, private=private)
        address = pair.endpoints.private if private else pair.endpoints.public
        assert (
            e2e_images.digest_reference(pair.endpoints, ref) == f"{address}/{image.repository}@{image.digest}"
        )
    missing = registry.image_ref(pair.endpoints, pair.public.name).replace(pair.public.tag, "nope")
    with pytest.raises(LookupError, match="holds no"):
        e2e_images.digest_reference(pair.endpoints, missing)
    with pytest.raises(ValueError, match="not served"):
        e2e_images.digest_reference(pair.endpoints, pair.public.name)


def test_up_on_a_healthy_pair_keeps_it(pair: Pair, node_ip: str) -> None:
    pids = [host.recorded_pid(i.component) for i in registry.instances(pair.layout)]
    assert None not in pids
    again = registry.up(node_ip, [pair.public.archive, pair.private.archive], pair.layout)
    assert again == pair.endpoints  # same password: pull secrets made from the first up stay valid
    assert [host.recorded_pid(i.component) for i in registry.instances(pair.layout)] == pids
    assert registry.is_healthy(pair.layout, node_ip)
    assert not registry.is_healthy(pair.layout, "203.0.113.9")  # a moved node IP means a new pair


def test_down_leaves_no_process_port_or_state(tmp_path: Path, node_ip: str) -> None:
    image = make_image(tmp_path / "img", f"docker.io/{PUBLIC_REPO}:down")
    layout = make_layout(tmp_path, "registry-test-down", node_ip)
    registry.down(layout)
    try:
        endpoints = registry.up(node_ip, [image.archive], layout)
        pids = [host.recorded_pid(i.component) for i in registry.instances(layout)]
        assert None not in pids
        assert port_open(endpoints.public)
        assert port_open(endpoints.private)
    finally:
        registry.down(layout)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert not port_open(endpoints.public)
    assert not port_open(endpoints.private)
    assert not layout.state_dir.exists()
    registry.down(layout)  # idempotent


# ---- the cluster's containerd pulling from it ------------------------------------------------------------


@pytest.fixture(scope="module")
def containerd_ns() -> Iterator[str]:
    """A containerd namespace of the local cluster's containerd, emptied and removed after the tests."""
    if not s.CONTAINERD_SOCKET.exists() or ctr("default", "version").returncode != 0:
        pytest.skip("the local cluster's containerd is not running: `python -m localcluster up`")
    ns = f"hotupgrade-registry-test-{secrets.token_hex(3)}"
    yield ns
    refs = ctr(ns, "images", "ls", "-q").stdout.split()
    if refs:
        ctr(ns, "images", "rm", "--sync", *refs)
    removed = ctr(ns, "namespaces", "rm", ns)
    assert removed.returncode == 0, removed.stderr


def ctr(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", f"--address={s.CONTAINERD_SOCKET}", f"--namespace={ns}", *args]
    return subprocess.run(argv, text=True, capture_output=True, timeout=120, check=False)


def pull(pair: Pair, ns: str, ref: str, *user: str) -> subprocess.CompletedProcess[str]:
    return ctr(ns, "images", "pull", "--hosts-dir", str(pair.layout.hosts_dir), *user, ref)


def image_digests(ns: str) -> dict[str, str]:
    lines = ctr(ns, "images", "ls").stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines}


def test_containerd_pulls_a_public_image_anonymously(pair: Pair, containerd_ns: str) -> None:
    ref = registry.image_ref(pair.endpoints, pair.public.name)
    out = pull(pair, containerd_ns, ref)
    assert out.returncode == 0, out.stderr
    assert image_digests(containerd_ns)[ref] == pair.public.digest


def test_containerd_pulls_the_private_image_only_with_credentials(pair: Pair, containerd_ns: str) -> None:
    ref = registry.image_ref(pair.endpoints, pair.private.name, private=True)
    for user in ((), ("--user", f"{pair.endpoints.username}:wrong")):
        refused = pull(pair, containerd_ns, ref, *user)
        assert refused.returncode != 0
        assert "401 Unauthorized" in refused.stderr, refused.stderr
        assert ref not in image_digests(containerd_ns)
    out = pull(pair, containerd_ns, ref, "--user", f"{pair.endpoints.username}:{pair.endpoints.password}")
    assert out.returncode == 0, out.stderr
    assert image_digests(containerd_ns)[ref] == pair.private.digest


def test_containerd_without_the_hosts_dir_does_not_trust_the_registry(pair: Pair, containerd_ns: str) -> None:
    ref = registry.image_ref(pair.endpoints, pair.public.name).replace(pair.public.tag, "no-hosts-dir")
    out = ctr(containerd_ns, "images", "pull", ref)
    assert out.returncode != 0
    assert "certificate" in out.stderr, out.stderr


def test_containerd_unpacks_a_derived_target_and_deleting_it_untags_it(
    pair: Pair, containerd_ns: str, tmp_path: Path
) -> None:
    """e2e/pulltarget.py's fresh targets: the base plus a gzip'ed layer of random bytes, pushed with the
    client; containerd checks every layer against the config's diff IDs when it unpacks."""
    base = pair.private
    client = Registry(pair.endpoints.private, ca_file=pair.endpoints.ca_file, auth=creds(pair))
    layer = pulltarget.write_random_layer(tmp_path / "layer.tar.gz", 1 << 20)
    tag = f"{base.tag}-pull-test"
    digest = pulltarget.push_derived(
        client,
        base.repository,
        base_tag=base.tag,
        new_tag=tag,
        layer_file=tmp_path / "layer.tar.gz",
        layer=layer,
    )
    assert client.manifest_digest(base.repository, tag) == digest
    manifest = json.loads(client.get_manifest(base.repository, tag)[1])
    diff_ids = json.loads(client.get_blob(base.repository, manifest["config"]["digest"]))["rootfs"][
        "diff_ids"
    ]
    assert diff_ids[-1] == layer.diff_id
    ref = f"{pair.endpoints.private}/{base.repository}:{tag}"
    user = f"{pair.endpoints.username}:{pair.endpoints.password}"
    out = pull(pair, containerd_ns, ref, "--user", user, "--print-chainid")
    assert out.returncode == 0, out.stderr
    assert image_digests(containerd_ns)[ref] == digest
    # Unpacked, every layer: the chain ID of all diff IDs (image-spec config.md "ChainID").
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    assert chain in out.stdout, out.stdout
    client.delete_manifest(base.repository, digest)
    assert client.manifest_digest(base.repository, tag) is None
    assert client.manifest_digest(base.repository, digest) is None
    assert client.manifest_digest(base.repository, base.tag) == base.digest  # the base is untouched
