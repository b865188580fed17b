"""How a followed release is shown: a live bar on a terminal (rich), one line per change otherwise (logs,
CI, a pipe). Both take controller.cli.follow summaries; neither decides anything."""

from typing import Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from controller.cli.follow import Summary, progress_line


class View(Protocol):
    def show(self, summary: Summary) -> None: ...

    def close(self) -> None: ...


class LineView:
    """`progress: LINE` whenever the line changes: a log reader sees every step, and nothing twice."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""

    def show(self, summary: Summary) -> None:
        line = progress_line(summary)
        if line != self.last:
            self.last = line
            self.out.write(f"progress: {line}\n")
            self.out.flush()

    def close(self) -> None:
        return


class LiveView:
    """A bar of updated pods out of the pods to move, the in-flight and failed counts, and the
    controller's Progressing message under it, redrawn in place."""

    def __init__(self, out: TextIO) -> None:
        console = Console(file=out, force_terminal=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: TaskID | None = None
        self.message = Text("")
        self.live = Live(Group(self.progress, self.message), console=console, refresh_per_second=4)
        self.live.start()

    def show(self, summary: Summary) -> None:
        counts = f"upgrading {summary.upgrading}, failed {summary.failed}"
        description = f"{summary.name} → {summary.image}"
        if self.task is None:
            self.task = self.progress.add_task(description, total=summary.goal or None, counts=counts)
        total = summary.goal if summary.fresh else None  # an unknown total shows a pulsing bar
        self.progress.update(
            self.task, description=description, total=total, completed=summary.updated, counts=counts
        )
        text = f"{summary.reason}: {summary.message}" if summary.fresh else summary.message
        self.message.plain = text
        self.live.refresh()

    def close(self) -> None:
        self.live.stop()


def view_for(out: TextIO, *, tty: bool) -> View:
    return LiveView(out) if tty else LineView(out)
