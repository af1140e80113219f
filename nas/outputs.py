"""Outputs a command will write, checked before the work that fills them: a slip in `--out` is one
line and exit 2 at once, not a traceback after minutes of training or exporting.

Tried, not inferred from permission bits: as root (containers, CI) mode bits stop nothing, and only
an attempt tells a writable folder from a read-only mount or a path under /proc. The probe is a
temporary file in the nearest folder that exists: nothing is left behind, and no missing folder is
created before the work succeeds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from memory_models.errors import InputError


def _nearest_folder(path: Path, flag: str) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: cannot be written ({parent} is not a folder)")
    return parent


def _probe(folder: Path, path: Path, flag: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".m2nas-write-check-"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot be written ({e.strerror or e})") from None


def check_writable_file(path: Path, flag: str) -> None:
    """An output file: not a folder, and its folder (or the nearest that exists) takes files."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory, expected a file name")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise InputError(f"{flag} {path}: cannot be written ({e.strerror or e})") from None
        return
    _probe(_nearest_folder(path, flag), path, flag)


def check_writable_dir(path: Path, flag: str) -> None:
    """An output folder: a folder if it exists (then it takes files), else creatable where it would be."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{flag} {path}: is a file, expected a folder")
        _probe(path, path, flag)
        return
    _probe(_nearest_folder(path, flag), path, flag)
