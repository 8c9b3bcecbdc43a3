"""Timing calls on crafted input, for the tests that hold "patterns that read untrusted text run in linear time".

A call must answer within LIMIT_SECONDS. A runaway match is interrupted after GUARD_SECONDS of CPU time (SIGPROF;
CPython's re checks for signals while it matches), so that a regression fails in seconds instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

LIMIT_SECONDS = 1.0  # per call
GUARD_SECONDS = 8.0  # CPU time after which a runaway call is interrupted (and counted as over the limit)


class Runaway(BaseException):
    """Raised in the guarded call: a BaseException, so that code under test that catches Exception (a runner that
    records a failed step) cannot take it for an ordinary failure and carry on."""


@contextlib.contextmanager
def cpu_guard(seconds: float):
    """Interrupt the call after ``seconds`` of CPU time (main thread only; elsewhere the call just runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Runaway()

    previous = signal.signal(signal.SIGPROF, interrupt)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def seconds(call, *args) -> float:
    """Wall time of one call; GUARD_SECONDS when it had to be interrupted. An exception is an answer too (refusing
    the input is; a crash is other tests' business): here only time counts."""
    try:
        with cpu_guard(GUARD_SECONDS):
            started = time.perf_counter()
            try:
                call(*args)
            except Runaway:
                raise
            except Exception:  # noqa: BLE001 (a refusal, or a crash: either way an answer, in time or not)
                pass
            return time.perf_counter() - started
    except Runaway:
        return GUARD_SECONDS


def too_slow(call, *args) -> float | None:
    """The time of a call that overran LIMIT_SECONDS twice in a row (once may be the machine), else None."""
    first = seconds(call, *args)
    if first <= LIMIT_SECONDS:
        return None
    if first >= GUARD_SECONDS:
        return first
    second = seconds(call, *args)
    return min(first, second) if second > LIMIT_SECONDS else None
