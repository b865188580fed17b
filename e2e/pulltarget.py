"""A fresh upgrade target per measured upgrade, so the kubelet pulls real bytes for it.

The suite's target (`sidecar:0.1.1`) shares all but a small layer with the injected sidecar image, and
containerd 1.6 fetches only the layers whose snapshots the node lacks (unpacker.go `unpack`: `sn.Stat` on
each chain ID), so removing the target's image record from the node still left a pull of a few KB. Here
each upgrade gets its own image: the target's config and layers plus one layer of random bytes, pushed
under a new tag beside it; no node holds that layer, so every pull downloads and unpacks it.

`derive` is pure (manifest and config in, manifest and config out); `write_random_layer` writes the layer
to a local file; `push_derived` and `fresh_target` talk to the registry (localcluster/registryclient.py).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcluster import registry, registryclient

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# Payload of the extra layer. On this 2-core machine the kubelet pulled (downloaded, checked, unpacked)
# 256 MiB from the node's registry in a few seconds (docs/upgrades.md, "Pre-pull", has the figures):
# long enough to show what a pull does to an upgrade, short enough for the suite.
EXTRA_LAYER_BYTES = 256 << 20
PAYLOAD_PATH = "hotupgrade-e2e-pull-payload"  # the layer's one file, at the root
CHUNK = 1 << 20
# The gzip'ed layer type that goes with each image manifest type (OCI image-spec media-types.md; Docker's
# image manifest v2 schema 2).
GZIP_LAYER_TYPES = {
    "application/vnd.oci.image.manifest.v1+json": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.distribution.manifest.v2+json": (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ),
}


def derive(manifest: Mapping[str, Any], config: Mapping[str, Any], layer: ExtraLayer) -> tuple[bytes, bytes]:
    """(manifest, config), byte for byte as pushed, of the image `manifest` + `config` describe with `layer`
    on top. Pure; ValueError for an index.

    The config lists the layer's diff ID in `rootfs.diff_ids` (containerd checks it when it unpacks:
    unpacker.go, "wrong diff id calculated on extraction") and, when the config keeps a history, one entry
    for it (one per non-empty layer, image-spec config.md).
    """
    media_type = str(manifest.get("mediaType", ""))
    if media_type not in GZIP_LAYER_TYPES:
        raise ValueError(f"not an image manifest: {media_type or 'no mediaType'}")
    new_config = copy.deepcopy(dict(config))
    new_config["rootfs"]["diff_ids"].append(layer.diff_id)
    if "history" in new_config:
        new_config["history"].append({"created_by": f"{__name__}: {PAYLOAD_PATH}, random bytes"})
    config_bytes = json.dumps(new_config, sort_keys=True, separators=(",", ":")).encode()
    new_manifest = copy.deepcopy(dict(manifest))
    new_manifest["config"] = {
        **new_manifest["config"],
        "digest": registryclient.content_digest(config_bytes),
        "size": len(config_bytes),
    }
    new_manifest["layers"].append(
        {"mediaType": GZIP_LAYER_TYPES[media_type], "digest": layer.digest, "size": layer.size}
    )
    manifest_bytes = json.dumps(new_manifest, sort_keys=True, separators=(",", ":")).encode()
    return manifest_bytes, config_bytes


@dataclass(frozen=True)
class ExtraLayer:
    """A gzip'ed layer tar: its digest and size as stored, and its diff ID (digest uncompressed)."""

    digest: str
    size: int
    diff_id: str


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what it passes on to `out`."""

    def __init__(self, out: io.BufferedIOBase) -> None:
        super().__init__()
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer, /) -> int:
        self.sha256.update(b)
        self.size += self.out.write(b)
        return len(memoryview(b))

    def tell(self) -> int:
        return self.size  # where tarfile is, for its record padding; it never seeks when writing


class _Random:
    """`size` random bytes to read, from the kernel's CSPRNG: no compressor or store can shrink them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def write_random_layer(out: Path, payload_bytes: int) -> ExtraLayer:
    """Write a gzip'ed tar of one file of `payload_bytes` random bytes to `out`; its digests."""
    with out.open("wb") as f:
        stored = _Hashing(f)
        # Level 0 (stored deflate blocks, RFC 1951 3.2.4): what deflate ends up emitting for random data
        # anyway, without the ~10 s of CPU per 256 MiB that level 1 spends finding that out here.
        with gzip.GzipFile(fileobj=stored, mode="wb", compresslevel=0, mtime=0) as gz:
            plain = _Hashing(gz)
            tar = tarfile.TarFile(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK)
            with tar:
                info = tarfile.TarInfo(PAYLOAD_PATH)
                info.size = payload_bytes
                info.mode = 0o644
                tar.addfile(info, _Random(payload_bytes))
    return ExtraLayer(
        digest="sha256:" + stored.sha256.hexdigest(),
        size=stored.size,
        diff_id="sha256:" + plain.sha256.hexdigest(),
    )


def push_derived(
    client: registryclient.Registry,
    repository: str,
    *,
    base_tag: str,
    new_tag: str,
    layer_file: Path,
    layer: ExtraLayer,
) -> str:
    """Push `base_tag` plus the layer in `layer_file` as `new_tag` of the same repository (the base's
    layers are there already); returns the new manifest's digest."""
    media_type, raw = client.get_manifest(repository, base_tag)
    manifest = json.loads(raw)
    config = json.loads(client.get_blob(repository, manifest["config"]["digest"]))
    new_manifest, new_config = derive(manifest, config, layer)
    with layer_file.open("rb") as f:
        client.upload_blob(repository, layer.digest, layer.size, f)
    config_digest = registryclient.content_digest(new_config)
    client.upload_blob(repository, config_digest, len(new_config), new_config)
    return client.put_manifest(repository, new_tag, media_type, new_manifest)


@dataclass(frozen=True)
class FreshTarget:
    """A pushed target no node holds yet: its reference, manifest digest and the layer that makes it new."""

    image: str
    digest: str
    layer: ExtraLayer


def derived_reference(base: str, token: str) -> str:
    """`host:port/repo:tag` -> `host:port/repo:tag-pull-<token>`: beside its base, in the same repository."""
    address, _, _ = base.partition("/")
    repository, tag = registry.repository_and_tag(base)
    return f"{address}/{repository}:{tag}-pull-{token}"


def fresh_target(endpoints: registry.Endpoints, base: str, workdir: Path) -> FreshTarget:
    """`base` (served by the private instance) plus EXTRA_LAYER_BYTES of random bytes, pushed there under a
    new tag (derived_reference): the target keeps needing the pull secret, and the allowlist's prefix for
    that repository admits it."""
    if not base.startswith(f"{endpoints.private}/"):
        raise ValueError(f"{base} is not served by the private instance {endpoints.private}")
    image = derived_reference(base, secrets.token_hex(4))
    repository, base_tag = registry.repository_and_tag(base)
    new_tag = registry.repository_and_tag(image)[1]
    client = registryclient.Registry(
        endpoints.private, ca_file=endpoints.ca_file, auth=(endpoints.username, endpoints.password)
    )
    layer_file = workdir / f"{new_tag}.tar.gz"
    try:
        layer = write_random_layer(layer_file, EXTRA_LAYER_BYTES)
        digest = push_derived(
            client, repository, base_tag=base_tag, new_tag=new_tag, layer_file=layer_file, layer=layer
        )
    finally:
        layer_file.unlink(missing_ok=True)
    return FreshTarget(image, digest, layer)


def drop_target(endpoints: registry.Endpoints, target: FreshTarget) -> None:
    """Delete the target's manifest (and so its tag) from the private instance: its random layer is then
    referenced by no manifest, and distribution's `garbage-collect` frees it."""
    repository, _ = registry.repository_and_tag(target.image)
    client = registryclient.Registry(
        endpoints.private, ca_file=endpoints.ca_file, auth=(endpoints.username, endpoints.password)
    )
    client.delete_manifest(repository, target.digest)
