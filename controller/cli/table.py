"""Plain-text tables and progress bars for the CLI. Pure: strings in, strings out."""

from collections.abc import Sequence


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, marking the cut with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, max_width: int = 60) -> str:
    """Left-aligned columns separated by two spaces, like kubectl; long cells are clipped."""
    cells = [[clip(str(c), max_width) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def render_bar(done: int, total: int, *, width: int = 30) -> str:
    """`[#####-----]  5/10` (an empty rollout shows a full bar)."""
    filled = width if total <= 0 else min(width, (done * width) // total)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"
