"""The exit codes of `hotupgrade`, defined here only: the commands return these members, `hotupgrade
--help` lists them (epilog), and a test holds docs/sidecarrelease.md's table to them. Pure."""

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    """What a `hotupgrade` command's exit status says; scripts and CI branch on it."""

    OK = 0
    FAILED = 1
    USAGE = 2  # argparse's own: the parser exits with 2 before any command runs
    TIMEOUT = 3
    PAUSED = 4
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done: Complete (pause: paused, nothing in flight); --direct: every pod upgraded; "
    "--no-wait: the edit made",
    ExitCode.FAILED: "failed or refused: Degraded, InvalidSpec, an edit or the options refused, an API "
    "error, no kubeconfig, a name not found; --direct: an upgrade failed or the rollout stopped",
    ExitCode.USAGE: "the command line does not parse (an unknown option, a missing argument)",
    ExitCode.TIMEOUT: "--timeout or --progress-deadline passed while following a release; it goes on",
    ExitCode.PAUSED: "the release is paused by its spec, once the upgrades in flight have ended (pods "
    "already held at the swap still swap): nothing more starts until `hotupgrade resume`",
    ExitCode.INTERRUPTED: "Ctrl-C: what was started goes on in the cluster",
}

EPILOG_WIDTH = 100  # argparse prints an epilog as is (RawDescriptionHelpFormatter)


def epilog() -> str:
    """The exit-code table of `hotupgrade --help`: one entry per code, in order, EPILOG_WIDTH wide."""
    name_width = max(len(code.name) for code in ExitCode)
    lines = []
    for code in ExitCode:
        head = f"  {code.value:<4} {code.name:<{name_width}}  "
        lines.append(
            textwrap.fill(
                MEANINGS[code], EPILOG_WIDTH, initial_indent=head, subsequent_indent=" " * len(head)
            )
        )
    return "exit codes (docs/sidecarrelease.md, 'The CLI', has them per command):\n" + "\n".join(lines)
