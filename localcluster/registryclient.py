"""A small OCI distribution API client: push an OCI-layout archive or single blobs and manifests, read
them back, delete a manifest.

Why not `ctr images push`: it pushes from containerd's content store, so the registry could only be
filled after containerd runs and has imported every image under a registry name; and it takes a
password on its command line. This pushes straight from the archives the image builder writes, skips
blobs and manifests the registry already holds (HEAD), and mounts blobs across repositories instead of
uploading them twice. Endpoints: OCI distribution-spec v1.1 "Push" (monolithic upload, cross-repository
mount), "Pull" and "Content Management" (deleting manifests); distribution implements them in
registry/handlers/{blobupload,blob,manifests}.go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

log = logging.getLogger("localcluster")

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
TIMEOUT = (10.0, 600.0)  # connect, read (seconds): a layer of a few hundred MB on a busy box


class RegistryError(RuntimeError):
    """The registry answered a push or pull step with an unexpected status; the message says which."""


def content_digest(data: bytes) -> str:
    """`sha256:<hex>` of data: the digest a registry stores a blob or manifest under (image-spec
    descriptor.md; distribution digests a manifest exactly as it was put)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def with_query(url: str, **params: str) -> str:
    """url with params appended to its query (an upload Location already carries `_state`)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def archive_blobs(index: dict[str, Any], manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The blob descriptors a manifest needs in the registry before it can be put: config, then layers."""
    if len(index.get("manifests", [])) != 1:
        raise ValueError("expected an OCI layout with exactly one image manifest")
    return [manifest["config"], *manifest["layers"]]


class Registry:
    """One registry host over HTTPS, verified with ca_file; basic auth when `auth` is given."""

    def __init__(self, address: str, *, ca_file: str, auth: tuple[str, str] | None = None) -> None:
        self.base = f"https://{address}"
        self.session = requests.Session()
        # Only our CA, no proxy: REQUESTS_CA_BUNDLE or HTTPS_PROXY from the environment would otherwise
        # override `verify` (requests merges environment settings over the session's) or reroute us.
        self.session.trust_env = False
        self.session.verify = ca_file
        self.session.auth = auth
        # digest -> a repository that holds it, for cross-repository mounts within this session.
        self.holders: dict[str, str] = {}

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _check(self, resp: requests.Response, expected: int, what: str) -> requests.Response:
        if resp.status_code != expected:
            raise RegistryError(f"{what}: HTTP {resp.status_code} {resp.text[:300]!r}")
        return resp

    def ping(self) -> int:
        """The status of `GET /v2/`: 200 when this client may use the registry, 401 when it must log in."""
        return self.session.get(f"{self.base}/v2/", timeout=TIMEOUT).status_code

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry holds for a tag or digest, None when it has none (404)."""
        resp = self.session.head(
            self._url(repository, f"manifests/{reference}"),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            timeout=TIMEOUT,
        )
        if resp.status_code == 404:
            return None
        self._check(resp, 200, f"HEAD manifest {repository}:{reference}")
        return resp.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> tuple[str, bytes]:
        """(media type, raw bytes) of a manifest."""
        resp = self.session.get(
            self._url(repository, f"manifests/{reference}"),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            timeout=TIMEOUT,
        )
        self._check(resp, 200, f"GET manifest {repository}:{reference}")
        return resp.headers.get("Content-Type", ""), resp.content

    def get_blob(self, repository: str, digest: str) -> bytes:
        resp = self.session.get(self._url(repository, f"blobs/{digest}"), timeout=TIMEOUT)
        return self._check(resp, 200, f"GET blob {repository}@{digest}").content

    def has_blob(self, repository: str, digest: str) -> bool:
        resp = self.session.head(self._url(repository, f"blobs/{digest}"), timeout=TIMEOUT)
        if resp.status_code == 404:
            return False
        self._check(resp, 200, f"HEAD blob {repository}@{digest}")
        return True

    def _mount(self, repository: str, digest: str) -> bool:
        """Link a blob another repository of this registry holds; False when the registry declines (202)."""
        source = self.holders.get(digest)
        if source is None or source == repository:
            return False
        url = with_query(self._url(repository, "blobs/uploads/"), mount=digest, **{"from": source})
        resp = self.session.post(url, timeout=TIMEOUT)
        if resp.status_code == 201:
            return True
        self._check(resp, 202, f"mount {digest} from {source} into {repository}")
        # Declined: the 202 opened an upload session we do not use; cancel it so nothing lingers.
        self.session.delete(urljoin(self.base, resp.headers["Location"]), timeout=TIMEOUT)
        return False

    def upload_blob(self, repository: str, digest: str, size: int, data: Any) -> None:
        """Monolithic upload: POST opens a session, one PUT with `?digest=` sends and commits it."""
        resp = self._check(
            self.session.post(self._url(repository, "blobs/uploads/"), timeout=TIMEOUT),
            202,
            f"open upload in {repository}",
        )
        location = urljoin(self.base, resp.headers["Location"])
        self._check(
            self.session.put(
                with_query(location, digest=digest),
                data=data,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                timeout=TIMEOUT,
            ),
            201,
            f"upload {digest} ({size} bytes) to {repository}",
        )

    def put_manifest(self, repository: str, tag: str, media_type: str, body: bytes) -> str:
        """PUT body as repository:tag; its digest, which the registry must report as content_digest(body)
        (RegistryError otherwise: it stored something else than was sent)."""
        resp = self._check(
            self.session.put(
                self._url(repository, f"manifests/{tag}"),
                data=body,
                headers={"Content-Type": media_type},
                timeout=TIMEOUT,
            ),
            201,
            f"PUT manifest {repository}:{tag}",
        )
        stored = str(resp.headers.get("Docker-Content-Digest", ""))
        if stored != content_digest(body):
            raise RegistryError(
                f"{repository}:{tag}: registry stored manifest {stored}, sent {content_digest(body)}"
            )
        return stored

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest and every tag naming it (needs `storage.delete.enabled`); its
        blobs stay until the registry's garbage-collect finds nothing referencing them."""
        resp = self.session.delete(self._url(repository, f"manifests/{digest}"), timeout=TIMEOUT)
        self._check(resp, 202, f"DELETE manifest {repository}@{digest}")

    def push_archive(self, archive: Path, repository: str, tag: str) -> int:
        """Push an OCI-layout tar as repository:tag; returns 1 if a manifest was written, 0 if the tag
        already pointed at the archive's manifest."""
        with tarfile.open(archive) as tar:

            def member(name: str) -> tarfile.TarInfo:
                return tar.getmember(name)

            def read(name: str) -> bytes:
                f = tar.extractfile(member(name))
                if f is None:
                    raise ValueError(f"{archive}: {name} is not a file")
                return f.read()

            index = json.loads(read("index.json"))
            descriptor = index["manifests"][0]
            digest = str(descriptor["digest"])
            if self.manifest_digest(repository, tag) == digest:
                return 0
            raw = read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            manifest = json.loads(raw)
            for blob in archive_blobs(index, manifest):
                blob_digest = str(blob["digest"])
                if not self.has_blob(repository, blob_digest) and not self._mount(repository, blob_digest):
                    info = member(f"blobs/sha256/{blob_digest.removeprefix('sha256:')}")
                    log.info(
                        "event=blob-upload repo=%s digest=%s bytes=%d", repository, blob_digest, info.size
                    )
                    self.upload_blob(repository, blob_digest, info.size, tar.extractfile(info))
                self.holders.setdefault(blob_digest, repository)
            media_type = str(manifest.get("mediaType") or descriptor["mediaType"])
            written = self.put_manifest(repository, tag, media_type, raw)
        if written != digest:
            raise RegistryError(
                f"{repository}:{tag}: registry stored manifest {written}, archive has {digest}"
            )
        log.info("event=image-pushed registry=%s ref=%s:%s digest=%s", self.base, repository, tag, digest)
        return 1
