"""The live config: a bad file never replaces a good one, in this process or in one started later."""

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from webhook.config import ConfigError
from webhook.config_source import ConfigSource

BAD = {"drainSeconds": 1, "parentShutdownSeconds": 1}


def write(path: Path, config: Mapping[str, object]) -> None:
    path.write_text(yaml.safe_dump(config))


def test_a_bad_file_at_first_start_is_fatal(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    write(config, BAD)
    with pytest.raises(ConfigError, match="parentShutdownSeconds"):
        ConfigSource(config, last_good=tmp_path / "last-good.yaml")


def test_a_process_started_after_the_file_went_bad_serves_the_last_good_version(tmp_path: Path) -> None:
    config, last_good = tmp_path / "config.yaml", tmp_path / "last-good.yaml"
    write(config, {"sidecarImage": "s:1"})
    first = ConfigSource(config, min_interval=0, last_good=last_good)
    write(config, {"sidecarImage": "s:2"})
    assert first.current().sidecar_image == "s:2"
    assert yaml.safe_load(last_good.read_text()) == {"sidecarImage": "s:2"}
    write(config, {**BAD, "sidecarImage": "s:3"})
    assert first.current().sidecar_image == "s:2"  # kept in this process
    results: list[str] = []
    later = ConfigSource(config, min_interval=0, last_good=last_good, on_reload=results.append)
    assert later.current().sidecar_image == "s:2"  # and in a process started now (a new gunicorn worker)
    assert results == ["error"]
    write(config, {"sidecarImage": "s:4"})
    assert later.current().sidecar_image == "s:4" == first.current().sidecar_image


def test_a_sibling_that_missed_the_last_good_version_serves_it_when_the_file_goes_bad(tmp_path: Path) -> None:
    # Two gunicorn workers re-read on their own schedules: one saw s:2, the other was idle until s:3 (bad)
    # had replaced it. Its own previous (s:1) is an image nobody configures any more.
    config, last_good = tmp_path / "config.yaml", tmp_path / "last-good.yaml"
    write(config, {"sidecarImage": "s:1"})
    busy = ConfigSource(config, min_interval=0, last_good=last_good)
    idle = ConfigSource(config, min_interval=0, last_good=last_good)
    write(config, {"sidecarImage": "s:2"})
    assert busy.current().sidecar_image == "s:2"
    write(config, {**BAD, "sidecarImage": "s:3"})
    assert idle.current().sidecar_image == "s:2"
    assert busy.current().sidecar_image == "s:2"
