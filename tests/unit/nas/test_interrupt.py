"""Ctrl-C during a search is taken at safe points: never lost in a finalizer, never ignored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nas import interrupt

# a finalizer that receives the Ctrl-C, as SQLAlchemy's weakref callbacks did in a CI run
FINALIZER = textwrap.dedent(
    """
    import os, signal

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))  # the handler runs here, inside the finalizer
    """
)


def _ctrl_c_in_a_finalizer() -> None:
    namespace: dict = {}
    exec(FINALIZER, namespace)
    namespace["Finalized"]()  # no reference kept: collected, and its finalizer run, at once


def test_pythons_own_handler_loses_a_ctrl_c_that_lands_in_a_finalizer():
    """Why the module exists: with the default handler the program just carries on."""
    code = FINALIZER + "Finalized()\nprint('carried on')\n"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert res.returncode == 0 and "carried on" in res.stdout, res
    assert "Exception ignored" in res.stderr and "KeyboardInterrupt" in res.stderr


def test_a_ctrl_c_in_a_finalizer_stops_at_the_next_safe_point():
    with interrupt.stop_at_safe_points():
        _ctrl_c_in_a_finalizer()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupt.check()  # the request ended with the block


def test_the_second_ctrl_c_raises_at_once():
    with interrupt.stop_at_safe_points():
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))  # the first one only asks
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))


def test_a_nested_block_keeps_the_outer_request():
    with interrupt.stop_at_safe_points():
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))
        with interrupt.stop_at_safe_points():
            with pytest.raises(KeyboardInterrupt):
                interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.stop_at_safe_points():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))
            interrupt.check()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_is_taken_only_where_asked_for():
    with interrupt.stop_at_safe_points(signal.SIGTERM):
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sleep_ends_soon_after_a_ctrl_c():
    with interrupt.stop_at_safe_points():
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            interrupt.sleep(60)
        assert time.monotonic() - t0 < 30  # ended by the signal, not by the 60 s
    interrupt.sleep(0.01)
