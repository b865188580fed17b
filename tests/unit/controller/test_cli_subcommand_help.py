"""`hotupgrade status --help` and `hotupgrade rollback --help`: a description like rollout's, and the
rollback default stated as controller.cli.edits.rollback_candidates computes it (test_cli_edits.py)."""

import pytest

from controller.cli.main import build_parser


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The subcommand's --help, its whitespace (argparse's wrapping) collapsed to single spaces."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_status_help_describes_both_views(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("status", capsys)
    assert (
        "Without -n: a table of the SidecarReleases and, for each NAME given, its conditions and the pods "
        "it governs. With -n NAMESPACE: one row per pod" in text
    )


def test_rollback_help_describes_both_modes_and_states_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("rollback", capsys)
    assert "Without -n: set spec.image of SidecarRelease NAME back to an image its status records" in text
    assert "--to IMAGE a SidecarRelease: status.image or one of status.previousImages" in text
    assert (
        "(default: the most recent image status records that is not spec.image: status.image when "
        "spec.image has moved on from it, an edit the controller has not seen yet, else "
        "status.previousImages[0])" in text
    )
