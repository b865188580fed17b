"""`hotupgrade rollout` options: the failure budget is on by default, the old flags still parse."""

import pytest

from controller.cli.main import build_parser, rollout_options

BASE = ["rollout", "-n", "shop", "--image", "sidecar:2"]


def test_defaults_stop_after_one_failure() -> None:
    options = rollout_options(build_parser().parse_args(BASE))
    assert (options.max_failures, options.max_unavailable, options.progress_deadline) == (1, 1, 1200.0)


def test_max_failures_zero_never_stops_and_negative_is_refused() -> None:
    assert rollout_options(build_parser().parse_args([*BASE, "--max-failures", "0"])).max_failures == 0
    with pytest.raises(SystemExit, match="--max-failures must be 0"):
        rollout_options(build_parser().parse_args([*BASE, "--max-failures", "-1"]))
    with pytest.raises(SystemExit, match="--max-unavailable must be at least 1"):
        rollout_options(build_parser().parse_args([*BASE, "--max-unavailable", "0"]))


def test_deprecated_flags_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([*BASE, "--pause-on-failure", "--batch-timeout", "60"])
    options = rollout_options(args)
    assert options.max_failures == 1 and options.progress_deadline == 60.0
    assert "--pause-on-failure is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="give only one"):
        rollout_options(build_parser().parse_args([*BASE, "--pause-on-failure", "--max-failures", "3"]))
