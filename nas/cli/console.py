"""The terminal, for every command: stdout for results, stderr for errors and progress.

Made per use, not at import, so that the width and the streams are those of the moment (tests
swap them; COLUMNS may be set late)."""

from __future__ import annotations

from rich.console import Console


def out() -> Console:
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)
