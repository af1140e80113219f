"""Ctrl-C (and SIGTERM) during a search, taken at safe points.

Python's own handler raises KeyboardInterrupt at whatever bytecode runs next. When that is a weakref
callback or a `__del__` (SQLAlchemy runs them all the time), the exception is printed as "Exception
ignored" and lost, and the search carries on as if nothing happened: seen in CI. Raised in the
middle of a storage write it could also leave a trial half-recorded. So while a search runs, the
first Ctrl-C only sets a flag, and the trainer (every optimizer step) and the worker loop (every
candidate, every wait) raise KeyboardInterrupt from there. A second Ctrl-C raises at once, for a
user who will not wait for the next step. Local worker processes ignore the terminal's Ctrl-C and
are asked the same way with SIGTERM by the process that started them, so each is asked once. A
SIGTERM to the search itself (a scheduler, `kill`, a container stopping) is taken like the first
Ctrl-C; `last_signal()` tells the CLI which one it was, for its message and exit status (143).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# A plain flag, not a threading.Event: the handler runs between two bytecodes of the main thread,
# which may hold the Event's lock at that moment.
_requested = False
_last: int | None = None  # the signal that asked last (kept after the block, for the CLI)


def _on_signal(signum, frame) -> None:
    global _requested, _last
    _last = signum
    if _requested:
        raise KeyboardInterrupt
    _requested = True


def last_signal() -> int | None:
    """The signal that last asked a search to stop (signal.SIGINT, signal.SIGTERM), or None."""
    return _last


@contextmanager
def stop_at_safe_points(*signals: signal.Signals) -> Iterator[None]:
    """Take `signals` (SIGINT if none are named) as a request to stop at the next `check()` while
    the block runs.

    Only a signal whose handler is still Python's default is taken, and only in the main thread:
    a SIGINT the parent process set to ignored stays ignored (as Python itself leaves it), and a
    block inside another `stop_at_safe_points` keeps the outer one's flag."""
    defaults = {signal.SIGINT: signal.default_int_handler}
    taken = [
        s
        for s in signals or (signal.SIGINT,)
        if threading.current_thread() is threading.main_thread()
        and signal.getsignal(s) is defaults.get(s, signal.SIG_DFL)
    ]
    if not taken:
        yield
        return
    global _requested
    _requested = False
    previous = {s: signal.signal(s, _on_signal) for s in taken}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = False


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came since the search began."""
    if _requested:
        raise KeyboardInterrupt


def sleep(seconds: float) -> None:
    """`time.sleep` that a Ctrl-C ends within a tenth of a second."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check()
        time.sleep(min(left, 0.1))
    check()
