"""SIGTERM (``kill PID``) and SIGHUP (a closed terminal) stop a sweep as Ctrl-C does.

Ray's ``ray.init`` makes SIGTERM exit the driver at once (sys.exit from its handler: a C++ stack
dump, exit 1, the running trials' rows never written). After connecting, the engine points both
signals at whatever handles SIGINT at that moment: Tune's graceful stop while a sweep runs
(the trials it stops become ``crashed`` rows, the lease is released), Python's
KeyboardInterrupt elsewhere. ``exit_code`` is then 128 + the signal, as a shell reports it.
"""

from __future__ import annotations

import signal
import threading

received: list[int] = []  # the stop signals this process has had, in order


def _as_ctrl_c(signum: int, frame) -> None:
    received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIG_IGN or SIG_DFL: nothing to delegate to
        raise KeyboardInterrupt


def install() -> None:
    """Handle SIGTERM and SIGHUP as SIGINT (only the main thread may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _as_ctrl_c)


def exit_code() -> int:
    """128 + the last stop signal received: 143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C."""
    return 128 + (received[-1] if received else signal.SIGINT)
