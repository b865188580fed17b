"""Where this machine's apt gets Debian from: debootstrap must use the same archive (or mirror)."""

from __future__ import annotations

import re
from pathlib import Path

SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def read_sources(paths: tuple[Path, ...] = SOURCES) -> str:
    """The text of every enabled apt source file (one-line `.list` and deb822 `.sources`)."""
    texts: list[str] = []
    for path in paths:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        texts += [f.read_text() for f in files if f.is_file() and f.suffix in (".list", ".sources")]
    return "\n".join(texts)


def debian_mirror(text: str) -> str:
    """The first `deb` URI that serves Debian's main archive (not -security, not a third party's).

    Raises LookupError when apt has none, with what an operator should configure.
    """
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
        if "deb" in fields.get("Types", "").split():
            uris += fields.get("URIs", "").split()
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[0] == "deb":
            uris.append(words[1])
    for uri in uris:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise LookupError(
        "no Debian archive in the apt sources (/etc/apt/sources.list*): add one (deb URI ending in /debian)"
    )
