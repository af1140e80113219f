"""The `m2nas` command: every typer subcommand, and the only code that prints or exits. Library
functions return results or raise `InputError`; this package turns them into tables, JSON and exit
codes."""

from .app import app, main

__all__ = ["app", "main"]
