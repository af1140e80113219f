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


# What a JSON document (OpGraph, Arch) may hold: numbers that sizes and figures can be computed
# from in floats and int64 (a 10**400 would end as an OverflowError deep in the memory model), and
# a nesting no document of ours comes near (a 100,000-deep one would end as a RecursionError).
MAX_JSON_INT = 2**62
MAX_JSON_DEPTH = 32


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_JSON_INT:
        raise _JsonBound(f"the number {text[:24]}{'...' if len(text) > 24 else ''} is beyond +-2^62")
    return int(text)


def _finite_float(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise _JsonBound(f"the number {text[:24]} is not a finite float")
    return v


class _JsonBound(ValueError):
    pass


def _depth(doc) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(text: str, source: str):
    """A JSON document with every way of not being one as an InputError naming `source`: syntax,
    numbers beyond the bounds above (or NaN / Infinity), nesting deeper than MAX_JSON_DEPTH."""
    import json

    def constant(name: str):
        raise _JsonBound(f"{name} is not a number a document may hold")

    try:
        doc = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except _JsonBound as e:
        raise InputError(f"{source}: {e}") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise InputError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return doc
