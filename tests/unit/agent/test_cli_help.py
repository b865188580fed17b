"""`hotupgrade-agent --help`: the whole module docstring as the description, lines as written."""

from __future__ import annotations

import pytest

from agent import cli


def test_help_shows_the_whole_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    # From the docstring's later paragraphs, which the first-line description used to drop.
    assert (
        "Configuration comes only from the environment names of docs/contract.md (agent/config.py).\n" in out
    )
    assert "\nExit codes: run 0 after SIGTERM, 1 on a startup error, 2 on bad configuration;" in out
    assert "place, 1 iptables failed, 2 bad redirect list.\n" in out
