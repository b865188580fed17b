"""`hotupgrade` console script (pyproject: webhook.ctl:main); the commands live in webhook.cli_tools."""

from webhook.cli_tools.app import main

__all__ = ["main"]
