"""The name pods pull the previous agent's image by: the registry's on the local cluster, as the suite's
other sidecars (clusterkit/images.py), and the plain name of a loaded image elsewhere (kind)."""

from __future__ import annotations

from clusterkit import images
from e2e import previmage
from localcluster import registry

ENDPOINTS = registry.Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p", ca_file="/ca.crt"
)


def test_on_the_local_cluster_it_is_pulled_from_the_public_instance_and_allowed_as_a_target() -> None:
    ref = previmage.reference(ENDPOINTS)
    assert ref == "10.1.2.3:5000/sidecar-hotupgrade/sidecar:prev"
    assert any(ref.startswith(p) for p in images.suite_images(ENDPOINTS).allow_prefixes)


def test_elsewhere_it_is_the_loaded_images_plain_name() -> None:
    assert previmage.reference(None) == "sidecar-hotupgrade/sidecar:prev"
    assert any(previmage.reference(None).startswith(p) for p in images.suite_images(None).allow_prefixes)
