"""Quiet mode: what Ray and Tune print by themselves, cut to one line per event.

The driver prints one progress line and stores the records itself; errors are in the rows, not
in a wall of tracebacks. This module imports ray only inside its functions.
"""

from __future__ import annotations

import logging
import os
import re
import sys

# What Ray publishes to every driver when a node is lost, which each driver's error listener
# prints whatever log_to_driver says (ray/_private/worker.py, listen_error_messages):
# - each agent of the node whose raylet died (the dashboard's and the runtime env's) sends the
#   reasons and the last 20 lines of its raylet.out, about 40 lines, twice
#   (ray/_private/process_watcher.py, report_raylet_error_logs);
# - the GCS sends three lines when it marks the node dead (gcs_server, missed heartbeats).
RAYLET_DIED = "Raylet is terminated."
MARKED_DEAD = re.compile(r"The node with node id: (\w+) and address: (\S+) .*has been marked dead")
AFTER = (
    "its trials are retried on a node of their type, or stored as no_gpu_type if none is back "
    "within --node-wait-s"
)


def quiet_ray() -> None:
    """Tune's own console output and per-trial loggers off (before ray.init)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def node_lost_line(message: str) -> str | None:
    """One line for Ray's message ``message`` that a node was lost; None for any other."""
    first = message.split("\n", 1)[0]
    if first.startswith(RAYLET_DIED):
        # "Raylet is terminated. Termination is unexpected. Possible reasons include: ..."
        how = first[len(RAYLET_DIED) :].split("Possible reasons", 1)[0].strip().rstrip(".")
        how = (how or "its raylet ended").lower()
        return f"warning: a Ray node was lost ({how}; its raylet.out says why); {AFTER}"
    dead = MARKED_DEAD.match(first)
    if dead:
        node, address = dead.groups()
        return (
            f"warning: Ray marked node {node[:12]} at {address} dead (it missed its heartbeats); "
            + AFTER
        )
    return None


def quiet_lost_nodes() -> None:
    """Print a lost node's dump as one line on stderr (once Ray is imported; idempotent)."""
    import ray._private.worker as ray_worker

    printer = ray_worker.print_to_stdstream
    if getattr(printer, "quiet", False):
        return

    said: set[str] = set()  # the same dump comes from each agent of the lost node

    def print_quietly(data: dict, ignore_prefix: bool) -> None:
        lines = data.get("lines") or []
        line = node_lost_line(lines[0]) if data.get("pid") == "raylet" and lines else None
        if line is None:
            printer(data, ignore_prefix)
        elif lines[0] not in said:
            said.add(lines[0])
            print(line, file=sys.stderr, flush=True)

    print_quietly.quiet = True  # type: ignore[attr-defined]
    # listen_error_messages looks the printer up in its module at each message
    ray_worker.print_to_stdstream = print_quietly
