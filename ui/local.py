"""Helpers for a ``python -m ui`` started as a local subprocess: the browser test and
``scripts/ui_screenshot.py`` both start one on a free loopback port and wait until it serves."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


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
