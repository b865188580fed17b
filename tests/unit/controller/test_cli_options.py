"""`hotupgrade` options: `rollout NAME` edits a SidecarRelease, `rollout --direct` annotates pods with the
failure budget on by default (the old flags still parse), and each mode refuses the other's flags."""

import threading
from pathlib import Path

import pytest

from controller.cli.exitcodes import ExitCode
from controller.cli.main import build_parser, follow_options, main, rollout_options, rollout_request, run

DIRECT = ["rollout", "--direct", "-n", "shop", "--image", "sidecar:2"]
RELEASE = ["rollout", "web", "--image", "sidecar:2"]


def test_direct_defaults_stop_after_one_failure() -> None:
    selection, options = rollout_options(build_parser().parse_args(DIRECT))
    assert (options.max_failures, options.max_unavailable, options.progress_deadline) == (1, 1, 1200.0)
    assert (selection.namespace, selection.selector, options.poll_interval) == ("shop", None, 2.0)


def test_direct_max_failures_zero_never_stops_and_negative_is_refused() -> None:
    assert rollout_options(build_parser().parse_args([*DIRECT, "--max-failures", "0"]))[1].max_failures == 0
    with pytest.raises(SystemExit, match="--max-failures must be 0"):
        rollout_options(build_parser().parse_args([*DIRECT, "--max-failures", "-1"]))
    with pytest.raises(SystemExit, match="--max-unavailable must be at least 1"):
        rollout_options(build_parser().parse_args([*DIRECT, "--max-unavailable", "0"]))
    with pytest.raises(SystemExit, match="a count"):
        rollout_options(build_parser().parse_args([*DIRECT, "--max-unavailable", "25%"]))


def test_direct_deprecated_flags_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([*DIRECT, "--pause-on-failure", "--batch-timeout", "60"])
    _, options = rollout_options(args)
    assert options.max_failures == 1 and options.progress_deadline == 60.0
    assert "--pause-on-failure is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="give only one"):
        rollout_options(build_parser().parse_args([*DIRECT, "--pause-on-failure", "--max-failures", "3"]))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["web"], "takes no release name"),
        (["--partition", "2"], "--partition: SidecarRelease options"),
        (["--no-wait"], "--no-wait: SidecarRelease options"),
        (["-n", "pay"], "exactly one -n"),
    ],
)
def test_direct_refuses_release_flags(extra: list[str], says: str) -> None:
    with pytest.raises(SystemExit, match=says):
        rollout_options(build_parser().parse_args([*DIRECT, *extra]))


def test_the_old_direct_command_without_direct_says_what_changed() -> None:
    args = build_parser().parse_args(["rollout", "-n", "shop", "-l", "app=web", "--image", "sidecar:2"])
    with pytest.raises(SystemExit, match=r"needs a SidecarRelease NAME .* or --direct -n NAMESPACE"):
        rollout_request(args)


def test_release_request_carries_only_the_fields_given() -> None:
    bare = rollout_request(build_parser().parse_args(RELEASE))
    assert (bare.name, bare.image, bare.selector, bare.namespace_selector, dict(bare.strategy)) == (
        "web",
        "sidecar:2",
        None,
        None,
        {},
    )
    flags = ["-n", "shop", "-l", "app=web,track!=canary", "--max-unavailable", "25%", "--partition", "3"]
    flags += ["--max-failures", "2", "--priority", "10", "--empty-image", "empty:1"]
    full = rollout_request(build_parser().parse_args([*RELEASE, *flags]))
    assert full.namespace_selector == {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
    assert full.selector == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}],
    }
    assert dict(full.strategy) == {"maxUnavailable": "25%", "partition": 3, "maxFailures": 2}
    assert (full.priority, full.empty_image) == (10, "empty:1")
    everywhere = rollout_request(build_parser().parse_args([*RELEASE, "-A", "-l", ""]))
    assert everywhere.all_namespaces and everywhere.selector == {}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["-n", "shop", "-A"], "one of -n, --namespace-selector and -A"),
        (["-l", "app in (web"], "unbalanced"),
        (["--pause-on-failure"], "is for --direct"),
    ],
)
def test_release_request_refuses_contradictions(extra: list[str], says: str) -> None:
    with pytest.raises(SystemExit, match=says):
        rollout_request(build_parser().parse_args([*RELEASE, *extra]))


def test_follow_options() -> None:
    waits = follow_options(build_parser().parse_args(["pause", "web"]))
    assert (waits.wait, waits.poll_interval, waits.timeout, waits.progress_deadline) == (
        True,
        1.0,
        0.0,
        1200.0,
    )
    quick = follow_options(build_parser().parse_args(["resume", "web", "--no-wait", "--timeout", "30"]))
    assert (quick.wait, quick.timeout) == (False, 30.0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["rollback"], "rollback takes one SidecarRelease NAME"),
        (["rollback", "a", "b"], "rollback takes one SidecarRelease NAME"),
        (["rollback", "-n", "shop", "web-0", "--to", "x:1"], "--to is for a SidecarRelease"),
        (["status", "-l", "app=web"], "-l selects pods: give -n NAMESPACE too"),
    ],
)
def test_usage_errors_need_no_cluster(argv: list[str], says: str) -> None:
    # `run` refuses before it reads a kubeconfig: there is none named here, and none is needed.
    args = build_parser().parse_args(["--kubeconfig", "/nonexistent", *argv])
    with pytest.raises(SystemExit, match=says):
        run(args, threading.Event())


def test_a_kubeconfig_that_does_not_load_is_one_clear_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["--kubeconfig", str(missing), "status", "web"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"hotupgrade: cannot load a kubeconfig from {missing}: ")
    assert "Traceback" not in err and err.count("\n") == 1
