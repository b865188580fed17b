"""`python -m bench.hotupgrade --help`: every option says what it sets, and each valued option its default."""

from __future__ import annotations

import argparse

from bench.hotupgrade import BenchConfig, build_parser, config_from


def _options() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]


def test_every_option_has_a_help_text() -> None:
    missing = [a.option_strings[0] for a in _options() if not a.help]
    assert missing == []


def test_every_valued_option_shows_its_default() -> None:
    shown = " ".join(build_parser().format_help().split())  # argparse's wrapping collapsed
    valued = [a for a in _options() if a.nargs is None and a.default is not None]
    assert len(valued) > 10
    for action in valued:
        assert action.help and action.help.endswith(" (default: %(default)s)"), action.option_strings
        expanded = " ".join(action.help.replace("%(default)s", str(action.default)).split())
        assert expanded in shown, expanded
    # --workdir has no value to show: its help says what it defaults to.
    assert "--workdir WORKDIR keep logs and run dir here (default: a temp dir)" in shown


def test_the_defaults_shown_are_the_benchmarks_config() -> None:
    assert config_from(build_parser().parse_args([])) == BenchConfig()
