"""Parsing Envoy's admin answers and building its command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent.admin import AdminError, parse_active_connections, parse_server_info
from agent.decisions import LiveEnvoy
from agent.envoy import EnvoyBinaryError, EnvoyOptions, envoy_command, parse_version, validate_command
from agent.hotrestart import SOCKET_PATH


def test_server_info() -> None:
    body = json.dumps(
        {
            "version": "9e55/1.40.0/Clean/RELEASE/BoringSSL",
            "state": "LIVE",
            "hot_restart_version": "11.104",
            "command_line_options": {"base_id": "7", "restart_epoch": 3},
        }
    ).encode()
    assert parse_server_info(body) == LiveEnvoy(epoch=3, hot_restart_version="11.104", state="LIVE")


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"state": "LIVE", "command_line_options": {}}'])
def test_bad_server_info(body: bytes) -> None:
    with pytest.raises(AdminError):
        parse_server_info(body)


def test_active_connections_sum_listeners_but_not_admin_or_hcm() -> None:
    stats = "\n".join(
        [
            "http.admin.downstream_cx_active: 1",
            "http.http.downstream_cx_active: 5",
            "listener.0.0.0.0_15001.downstream_cx_active: 3",
            "listener.0.0.0.0_15002.downstream_cx_active: 2",
            "listener.admin.downstream_cx_active: 1",
        ]
    )
    assert parse_active_connections(stats) == 5
    assert parse_active_connections("listener.admin.downstream_cx_active: 1\n") == 0


OPTIONS = EnvoyOptions(
    binary="/bin/envoy",
    bootstrap=Path("/run/b.yaml"),
    epoch=4,
    base_id=7,
    drain_seconds=10,
    parent_shutdown_seconds=15,
)


def test_envoy_command_has_epoch_base_id_socket_and_drain_times() -> None:
    argv = envoy_command(OPTIONS)
    assert argv[0] == "/bin/envoy"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--config-path"] == "/run/b.yaml"
    assert pairs["--restart-epoch"] == "4"
    assert pairs["--base-id"] == "7"
    assert pairs["--socket-path"] == SOCKET_PATH
    assert pairs["--drain-time-s"] == "10"
    assert pairs["--parent-shutdown-time-s"] == "15"
    assert "--skip-hot-restart-parent-stats" not in argv


def test_envoy_command_skips_parent_stats_when_asked() -> None:
    argv = envoy_command(replace(OPTIONS, skip_parent_stats=True))
    assert argv.count("--skip-hot-restart-parent-stats") == 1
    assert argv[:-1] == envoy_command(OPTIONS), "one flag added, nothing else changed"


def test_validate_command_checks_the_file_without_joining_the_hot_restart() -> None:
    argv = validate_command("/bin/envoy", Path("/run/v.yaml"))
    assert argv[0] == "/bin/envoy"
    assert argv[argv.index("--mode") + 1] == "validate"
    assert argv[argv.index("--config-path") + 1] == "/run/v.yaml"
    assert "--disable-hot-restart" in argv
    # An epoch, base id or socket path would name the live Envoy's hot-restart shm and sockets.
    assert not {"--restart-epoch", "--base-id", "--socket-path"} & set(argv)


def test_version_parsing() -> None:
    output = "\n/usr/bin/envoy  version: 9e55/1.40.0/Clean/RELEASE/BoringSSL\n\n"
    assert parse_version(output) == "9e55/1.40.0/Clean/RELEASE/BoringSSL"
    with pytest.raises(EnvoyBinaryError):
        parse_version("nothing here")
