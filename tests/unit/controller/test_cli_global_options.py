"""`hotupgrade`'s global options (--kubeconfig) parse on either side of the subcommand, as users write
them (`hotupgrade status web --kubeconfig X`), and the command lines that worked before mean the same."""

import argparse
from pathlib import Path

import pytest

from controller.cli.exitcodes import ExitCode
from controller.cli.main import build_parser, main

# One valid command line per subcommand, without global options.
COMMANDS = {
    "rollout": ["rollout", "web", "--image", "sidecar:2"],
    "pause": ["pause", "web"],
    "resume": ["resume", "web"],
    "rollback": ["rollback", "web"],
    "status": ["status", "web"],
    "abort": ["abort", "-n", "shop", "web-0"],
    "retry": ["retry", "-n", "shop", "web-0"],
}


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_subcommand_is_covered() -> None:
    # A new subcommand must be added above, so the tests below cover it too.
    assert _subcommands(build_parser()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kubeconfig_before_or_after_the_subcommand(command: str) -> None:
    argv = COMMANDS[command]
    parse = build_parser().parse_args
    assert parse(argv).kubeconfig is None
    assert parse(["--kubeconfig", "/before", *argv]).kubeconfig == "/before"
    assert parse([*argv, "--kubeconfig", "/after"]).kubeconfig == "/after"
    assert parse([argv[0], "--kubeconfig", "/between", *argv[1:]]).kubeconfig == "/between"
    # Given on both sides, the later one wins, as a repeated option does.
    assert parse(["--kubeconfig", "/before", *argv, "--kubeconfig", "/after"]).kubeconfig == "/after"


def test_the_subcommands_other_options_are_unchanged_by_a_trailing_kubeconfig() -> None:
    before = build_parser().parse_args(["--kubeconfig", "/k", *COMMANDS["rollout"], "-n", "shop"])
    after = build_parser().parse_args([*COMMANDS["rollout"], "-n", "shop", "--kubeconfig", "/k"])
    assert vars(before) == vars(after)


def test_the_subcommand_help_lists_the_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--help"])
    assert "--kubeconfig" in capsys.readouterr().out


def test_a_trailing_kubeconfig_is_the_one_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["status", "web", "--kubeconfig", str(missing)]) == ExitCode.FAILED
    assert capsys.readouterr().err.startswith(f"hotupgrade: cannot load a kubeconfig from {missing}: ")
