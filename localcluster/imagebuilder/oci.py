"""Write OCI image archives (oci-layout tarballs) that `ctr images import` accepts, without Docker."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
# Uncompressed layers: import then only hashes and unpacks, no gunzip (warm cluster-up time).
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """A layer tar on disk and its sha256 digest (diff id == digest for an uncompressed layer)."""

    path: Path
    digest: str
    size: int


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image config besides its layers."""

    name: str  # fully qualified, e.g. docker.io/sidecar-hotupgrade/sidecar:0.1.0
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)
    user: str = ""  # "uid:gid"; empty means root (and leaves the config of root images unchanged)


def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Reproducible entries: no timestamps, no owner names (same inputs -> same digest)."""
    info.mtime = 0
    info.uname = ""
    info.gname = ""
    return info


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def walk_sorted(root: Path, skip: Callable[[str], bool]) -> Iterable[tuple[Path, str]]:
    """(path, archive name) for every entry under root, parents first, sorted, skipping what skip() says."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not skip(os.path.normpath(os.path.join(rel_dir, d))))
        entries = sorted([*dirnames, *filenames])
        for name in entries:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if name in filenames and skip(rel):
                continue
            yield Path(dirpath) / name, rel
        # os.walk does not descend into symlinked dirs; they were yielded above as links.


def write_layer(root: Path, out: Path, skip: Callable[[str], bool] = lambda _: False) -> Layer:
    """Tar the tree under root (paths relative to it) into out, reproducibly."""
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path, rel in walk_sorted(root, skip):
            st = path.lstat()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                # An overlayfs whiteout (a deletion in an upper dir) becomes an OCI whiteout file.
                parent, _, base = rel.rpartition("/")
                info = normalize(tarfile.TarInfo(f"{parent}/.wh.{base}" if parent else f".wh.{base}"))
                tar.addfile(info)
                continue
            if (
                stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode)
                or stat.S_ISFIFO(st.st_mode)
                or stat.S_ISSOCK(st.st_mode)
            ):
                continue  # device nodes and sockets: the runtime provides /dev
            info = normalize(tar.gettarinfo(str(path), arcname=rel))
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    tmp.rename(out)
    return Layer(out, _sha256_file(out), out.stat().st_size)


def write_files_layer(files: dict[str, tuple[bytes, int]], symlinks: dict[str, str], out: Path) -> Layer:
    """A small layer from in-memory files {path: (content, mode)} and symlinks {path: target}."""
    tmp = out.with_suffix(".tmp")
    dirs = sorted({str(Path(p).parent) for p in [*files, *symlinks]} - {"."})
    all_dirs = sorted({str(parent) for d in dirs for parent in [Path(d), *Path(d).parents]} - {"."})
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in all_dirs:
            info = normalize(tarfile.TarInfo(d))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name in sorted(files):
            data, mode = files[name]
            info = normalize(tarfile.TarInfo(name))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        for name in sorted(symlinks):
            info = normalize(tarfile.TarInfo(name))
            info.type = tarfile.SYMTYPE
            info.linkname = symlinks[name]
            info.mode = 0o777
            tar.addfile(info)
    tmp.rename(out)
    return Layer(out, _sha256_file(out), out.stat().st_size)


def image_config(spec: ImageSpec, layers: list[Layer]) -> bytes:
    """The OCI image config JSON (linux/amd64)."""
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd or None,
            "Env": spec.env,
            "WorkingDir": spec.workdir,
            "Labels": spec.labels or None,
            "User": spec.user or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": "localcluster/imagebuilder/builder.py"}
            for _ in layers
        ],
    }
    doc["config"] = {k: v for k, v in doc["config"].items() if v is not None}  # type: ignore[attr-defined]
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data_digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": data_digest, "size": size}


def _blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_and_index(spec: ImageSpec, layers: list[Layer]) -> tuple[bytes, bytes, bytes]:
    """(config, manifest, index) JSON bytes; the index names the image for containerd's importer."""
    config = image_config(spec, layers)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, _blob_digest(config), len(config)),
            "layers": [_descriptor(MEDIA_LAYER, layer.digest, layer.size) for layer in layers],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    tag = spec.name.rsplit(":", 1)[1]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    **_descriptor(MEDIA_MANIFEST, _blob_digest(manifest), len(manifest)),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": spec.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return config, manifest, index


def write_archive(spec: ImageSpec, layers: list[Layer], out: Path) -> str:
    """Write an oci-layout tarball to out; returns the manifest digest."""
    config, manifest, index = manifest_and_index(spec, layers)
    tmp = out.with_suffix(".tmp")

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = normalize(tarfile.TarInfo(name))
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(tmp, "w") as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", index)
        for data in (config, manifest):
            add_bytes(tar, f"blobs/sha256/{_blob_digest(data).removeprefix('sha256:')}", data)
        seen: set[str] = set()
        for layer in layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            info = normalize(tar.gettarinfo(str(layer.path), arcname=f"blobs/sha256/{layer.digest[7:]}"))
            info.mode = 0o644
            with layer.path.open("rb") as f:
                tar.addfile(info, f)
    tmp.rename(out)
    return _blob_digest(manifest)
