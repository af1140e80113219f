"""The one error type that means "the user gave us something wrong".

Everything that reads user files or arguments raises `InputError` with a message that names the
file or field and what is wrong; the CLI turns it into one line on stderr and exit code 2. Any
other exception is a bug in m2nas and is allowed to show its traceback.
"""


class InputError(ValueError):
    """Bad user input: a malformed file, an unknown name, an impossible request."""


def check_document(d, source: str, fmt: str, version: int, what: str) -> None:
    """A versioned JSON document (OpGraph, Arch): an object of our format, at a version we read."""
    if not isinstance(d, dict):
        raise InputError(f"{source}: expected a JSON object")
    if d.get("format", fmt) != fmt:
        raise InputError(f"{source}: format: expected {fmt!r}, got {d.get('format')!r}")
    if d.get("version", version) != version:
        raise InputError(
            f"{source}: version: this m2nas reads {what} version {version}, got {d.get('version')!r}"
        )


class FieldError:
    """The first error of a pydantic `ValidationError`, in the terms every m2nas message uses.

    One formatter for the study file, the device catalogue, search spaces and dataset options, so a
    wrong field reads the same wherever it is: `devices[0].limits: unknown field`."""

    __slots__ = ("input", "kind", "loc", "msg")

    def __init__(self, e, *, keys: bool = True, dotted: bool = False) -> None:
        err = e.errors()[0]
        parts = list(err.get("loc", ()))
        if not keys:  # dataset options: the option name and list indexes; union tags and dict keys dropped
            parts = parts[:1] + [p for p in parts[1:] if isinstance(p, int)]
        loc = ""
        for part in parts:
            if isinstance(part, int) and not dotted:  # dotted: search spaces spell lists as `bits.0`
                loc += f"[{part}]"
            else:
                loc += f".{part}" if loc else str(part)
        self.loc = loc
        self.kind = {"missing": "missing", "extra_forbidden": "unknown"}.get(err.get("type"), "invalid")
        self.msg = (
            str(err.get("msg", "invalid value"))
            .removeprefix("Value error, ")
            .removeprefix("Assertion failed, ")
        )
        self.input = err.get("input")

    def describe(self, unknown: str = "unknown field") -> str:
        """`loc: what is wrong` (or just what is wrong, for the whole document)."""
        msg = {"missing": "required field is missing", "unknown": unknown}.get(self.kind, self.msg)
        return f"{self.loc}: {msg}" if self.loc else msg

    def __str__(self) -> str:
        return self.describe()


def read_user_text(path, what: str) -> str:
    """A user's text file (study, device, space, JSON), with every way of not being one as an
    InputError: a directory, an unreadable file, bytes that are not UTF-8. A UTF-8 byte-order
    mark (some Windows editors write one) is dropped, not reported as a syntax error on line 1."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected {what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}), expected {what}") from None


# What a wrongly typed field of a JSON document (a string for a number, a list for a table) makes
# the constructors raise; the CLI entry points turn these into one line naming the file.
DOCUMENT_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError)
