"""`hotupgrade rollout --help`: the release mode's and the --direct mode's options under separate titles,
each with a one-line description, and every option's help naming its mode."""

import argparse
import re

import pytest

from controller.cli.main import _RELEASE_ONLY, BOTH_MODES, DIRECT_MODE, RELEASE_MODE, build_parser

# The first option string of each rollout option, by the section its help shows it in.
EXPECTED = {
    RELEASE_MODE: [
        "name",
        "--namespace-selector",
        "-A",
        "--partition",
        "--priority",
        "--empty-image",
        "--no-wait",
        "--timeout",
    ],
    DIRECT_MODE: ["--direct", "--pause-on-failure"],
    BOTH_MODES: [
        "--image",
        "-n",
        "-l",
        "--max-unavailable",
        "--max-failures",
        "--progress-deadline",
        "--poll-interval",
    ],
}
GLOBAL = ["-h", "--kubeconfig"]


def _rollout() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    rollout: argparse.ArgumentParser = sub.choices["rollout"]
    return rollout


def _sections(text: str) -> dict[str, list[str]]:
    """The help's sections: title -> its lines (a title is an unindented line ending in ':')."""
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        if re.fullmatch(r"\S.*:", line):
            lines = sections.setdefault(line[:-1], [])
        else:
            lines.append(line)
    return sections


def _invocations(lines: list[str]) -> list[str]:
    """The first option string (or the positional's name) of each argument listed in a section."""
    return [m.group(1) for line in lines if (m := re.match(r"  ([-\w]+)[ ,]", line + " "))]


@pytest.fixture
def help_text(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping: one line per description and per option
    return _rollout().format_help()


def test_each_mode_has_a_titled_section_with_a_one_line_description(help_text: str) -> None:
    sections = _sections(help_text)
    groups = {g.title: g for g in _rollout()._action_groups}
    for (title, _), options in EXPECTED.items():
        lines = [line for line in sections[title] if line.strip()]
        description = groups[title].description
        assert description and "\n" not in description
        assert lines[0] == f"  {description}", title
        assert _invocations(lines[1:]) == options, title
    assert _invocations(sections["options"]) == GLOBAL


def test_the_sections_come_release_direct_both(help_text: str) -> None:
    titles = [title for title in _sections(help_text) if title != "options" and not title.startswith("usage")]
    assert titles == [RELEASE_MODE[0], DIRECT_MODE[0], BOTH_MODES[0]]


def test_every_rollout_option_is_in_a_mode_and_its_help_says_which() -> None:
    placed = {o for options in EXPECTED.values() for o in options}
    by_title = {title: tag for title, tag in EXPECTED}
    for group in _rollout()._action_groups:
        for action in group._group_actions:
            first = (action.option_strings or [action.dest])[0]
            if action.help == argparse.SUPPRESS or first in GLOBAL:
                continue
            assert first in placed, f"{first}: not in a mode's section"
            assert group.title in by_title, (first, group.title)
            assert action.help and action.help.startswith(by_title[group.title]), (first, action.help)


def test_the_deprecated_batch_timeout_stays_hidden(help_text: str) -> None:
    assert "--batch-timeout" not in help_text


def test_direct_refuses_exactly_the_release_modes_options() -> None:
    # rollout_options refuses these with --direct (and NAME, and --timeout, whose default is 0.0).
    group = next(g for g in _rollout()._action_groups if g.title == RELEASE_MODE[0])
    dests = {a.dest for a in group._group_actions}
    assert dests == {"name", "timeout", *_RELEASE_ONLY}
