"""The server's side of the release cache: the snapshot file re-read when replaced, the last good one kept,
readiness until the first one, and /mutate and /metrics on top of it (Flask's test client)."""

import base64
import json
import os
from pathlib import Path
from typing import Any

import jsonpatch
from prometheus_client import CollectorRegistry

from releaseapi.release import API_VERSION, KIND
from webhook.app import create_app
from webhook.config_source import ConfigSource
from webhook.injection_status import parse_status
from webhook.metrics import Metrics
from webhook.release_source import ReleaseCacheCollector, ReleaseSource
from webhook.releaseimage import render_snapshot

FIXTURE = Path(__file__).parents[2] / "integration" / "webhook" / "fixtures" / "create-pod.json"


def release(image: str, *, name: str = "web") -> dict[str, Any]:
    spec = {"selector": {"matchLabels": {"app": "web"}}, "image": image}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "generation": 2},
        "spec": spec,
    }


def write(path: Path, *releases: dict[str, Any], events: int = 1, updated: float = 50.0) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_snapshot(list(releases), {}, events=events, updated=updated, synced=10.0))
    os.replace(tmp, path)  # as the cache process writes it: a new inode each time


def test_no_snapshot_until_the_cache_writes_one_then_each_replacement_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "releases.json"
    source = ReleaseSource(path)
    assert source.current() is None and not source.ready()
    write(path, release("r/sidecar:2"))
    first = source.current()
    assert first is not None and source.ready() and [r.spec.image for r in first.releases] == ["r/sidecar:2"]
    assert source.current() is first  # unchanged file: not parsed again
    write(path, release("r/sidecar:3"), events=2)
    second = source.current()
    assert second is not None and [r.spec.image for r in second.releases] == ["r/sidecar:3"]


def test_an_unreadable_file_keeps_the_last_good_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "releases.json"
    source = ReleaseSource(path)
    write(path, release("r/sidecar:2"))
    good = source.current()
    path.write_text("{not json")
    assert source.current() is good
    path.unlink()
    assert source.current() is good  # the cache process restarting: keep serving what was known


def test_the_collector_reports_sync_age_events_and_releases(tmp_path: Path) -> None:
    path = tmp_path / "releases.json"
    collector = ReleaseCacheCollector(ReleaseSource(path), clock=lambda: 80.0)

    def values() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(s.labels.items())): s.value for f in collector.collect() for s in f.samples}

    assert values() == {("hotupgrade_webhook_release_cache_synced", ()): 0}
    broken = release("not a reference!", name="broken")
    write(path, release("r/sidecar:2"), broken, events=5, updated=50.0)
    assert values() == {
        ("hotupgrade_webhook_release_cache_synced", ()): 1,
        ("hotupgrade_webhook_release_cache_age_seconds", ()): 30.0,
        ("hotupgrade_webhook_release_cache_events", ()): 5,
        ("hotupgrade_webhook_release_cache_releases", (("valid", "true"),)): 1,
        ("hotupgrade_webhook_release_cache_releases", (("valid", "false"),)): 1,
    }


def mutate(client: Any) -> dict[str, Any]:
    review = json.loads(FIXTURE.read_text())["review"]
    response = client.post("/mutate", json=review)
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()["response"]
    pod = jsonpatch.apply_patch(review["request"]["object"], json.loads(base64.b64decode(answer["patch"])))
    return dict(pod)


def test_mutate_injects_the_release_image_and_ready_waits_for_the_first_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "releases.json"
    metrics = Metrics(CollectorRegistry())
    source = ReleaseSource(path)
    metrics.add_collector(ReleaseCacheCollector(source))
    client = create_app(ConfigSource(None), metrics, releases=source).test_client()
    assert client.get("/readyz").status_code == 503
    write(path, release("r/sidecar:2", name="shop-web"))
    assert client.get("/readyz").status_code == 200
    status = parse_status(mutate(client)["metadata"]["annotations"]["hotupgrade.io/status"])
    assert (status.sidecar_image, status.release) == ("r/sidecar:2", "shop-web")
    write(path)  # the release deleted: the config default again
    status = parse_status(mutate(client)["metadata"]["annotations"]["hotupgrade.io/status"])
    assert (status.sidecar_image, status.release) == ("sidecar-hotupgrade/sidecar:0.1.0", None)
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'hotupgrade_webhook_image_choices_total{source="release"} 1.0' in exposition
    assert 'hotupgrade_webhook_image_choices_total{source="default"} 1.0' in exposition
    assert "hotupgrade_webhook_release_cache_synced 1.0" in exposition


def test_without_a_release_cache_the_server_is_ready_and_injects_the_default() -> None:
    client = create_app(ConfigSource(None), Metrics(CollectorRegistry())).test_client()
    assert client.get("/readyz").status_code == 200
    status = parse_status(mutate(client)["metadata"]["annotations"]["hotupgrade.io/status"])
    assert (status.sidecar_image, status.release) == ("sidecar-hotupgrade/sidecar:0.1.0", None)
