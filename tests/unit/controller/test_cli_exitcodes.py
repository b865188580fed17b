"""`hotupgrade`'s exit codes have one definition (controller.cli.exitcodes.ExitCode): the --help epilog
and the docs list exactly its members, and argparse's own usage error is its USAGE."""

import re
import signal
from pathlib import Path

import pytest

from controller.cli.exitcodes import MEANINGS, ExitCode, epilog
from controller.cli.main import build_parser

DOCS = Path(__file__).resolve().parents[3] / "docs"
# "0 `OK`": how the docs name a code, by value and member.
MENTION = re.compile(r"\b(\d+) `([A-Z]+)`")
MEMBERS = [(code.value, code.name) for code in ExitCode]


def _table_rows(text: str, header: str) -> list[str]:
    """The body rows of the markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_docs_table_lists_every_code_in_order() -> None:
    rows = _table_rows((DOCS / "sidecarrelease.md").read_text(), "| exit |")
    first_cells = [row.split("|")[1].strip() for row in rows]
    listed = [(int(m.group(1)), m.group(2)) for cell in first_cells if (m := MENTION.fullmatch(cell))]
    assert len(listed) == len(first_cells), first_cells
    assert listed == MEMBERS


@pytest.mark.parametrize("doc", ["sidecarrelease.md", "rollout.md"])
def test_every_code_the_docs_name_is_a_member(doc: str) -> None:
    mentions = {(int(v), name) for v, name in MENTION.findall((DOCS / doc).read_text())}
    assert mentions, doc
    assert mentions <= set(MEMBERS), mentions - set(MEMBERS)


def test_the_help_epilog_lists_every_code_in_order() -> None:
    text = build_parser().format_help()
    assert text.rstrip().endswith(epilog())
    entries = re.findall(r"^  (\d+) +([A-Z]+)  ", epilog(), flags=re.MULTILINE)
    assert [(int(v), name) for v, name in entries] == MEMBERS
    assert set(MEANINGS) == set(ExitCode)
    assert all(len(line) <= 100 for line in epilog().splitlines())


def test_a_command_line_that_does_not_parse_exits_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "--no-such-option"], ["rollout", "web"], []):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(argv)
        assert exited.value.code == ExitCode.USAGE, argv
    assert "usage: hotupgrade" in capsys.readouterr().err


def test_interrupted_is_what_a_shell_reports_for_sigint() -> None:
    assert ExitCode.INTERRUPTED == 128 + signal.SIGINT
