"""The xDS test server's image: its name follows the module's cache key, and its entrypoint serves ADS
and the HTTP API on a pod's addresses as an unprivileged user."""

from __future__ import annotations

from localcluster import xds
from localcluster.imagebuilder import builder


def test_the_tag_is_the_module_hash() -> None:
    assert xds.image_name("0123456789abcdef") == "docker.io/sidecar-hotupgrade/xds-server:0123456789abcdef"


def test_the_entrypoint_listens_on_every_address_as_non_root() -> None:
    spec = xds.image_spec(xds.image_name("k"))
    assert spec.entrypoint == [
        f"/{xds.BINARY}",
        f"-ads-listen=0.0.0.0:{xds.ADS_PORT}",
        f"-http-listen=0.0.0.0:{xds.HTTP_PORT}",
    ]
    assert spec.user == f"{builder.NONROOT_UID}:{builder.NONROOT_UID}"
    assert xds.ADS_PORT != xds.HTTP_PORT
