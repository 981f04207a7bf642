"""Helpers for a ``python -m ui`` started as a local subprocess: the browser tests,
``benchmarks/ui_speed.py`` and ``scripts/ui_screenshot.py`` start one on a free loopback port and
wait until it serves (``serving`` does both and stops it after)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Return once ``url`` (ending in "/") answers Gradio's ``config``; RuntimeError if the app
    process exits first (with its stderr, when that is a pipe) or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr else f"exit code {proc.returncode}"
            raise RuntimeError(f"python -m ui exited: {detail}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def serving(db: str, cwd: str, env: dict[str, str], quiet: bool = False) -> Iterator[str]:
    """``python -m ui --db db`` on a free loopback port, run in ``cwd`` with ``env``: yields its
    URL once it serves, stops it on the way out. ``quiet``: its output is dropped (else piped,
    so that a start that fails says why)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui", "--db", db, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=out,
        text=True,
    )
    try:
        wait_until_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
