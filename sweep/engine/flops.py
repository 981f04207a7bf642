"""The FLOPs of one sequence per workload shape, learned from the sweep's ok trials and handed to
the next trial of the same shape in its request (``TrialRequest.flops_per_sequence``): that
trial scales the count to its batch instead of counting again (counting takes a forward and a
backward under torch's FLOP counter; the count is exactly linear in the batch, since it is taken
on a batch of one). Pure: the searcher feeds it records and asks it for requests.
"""

from __future__ import annotations

from typing import Any

from sweep.plan.config import shape_fields
from sweep.results.record import OK


def shape_key(config: dict[str, Any]) -> tuple:
    """The workload without its batch size: trials equal here do the same work per sequence."""
    return tuple((k, config.get(k)) for k in shape_fields())


class FlopsByShape:
    """FLOPs per sequence by ``shape_key``."""

    def __init__(self) -> None:
        self.known: dict[tuple, int] = {}

    def remember(self, config: dict[str, Any], status: str, metrics: dict | None) -> None:
        """Keep an ok trial's count per sequence (only an exact multiple of its batch)."""
        flops = (metrics or {}).get("flops_per_step")
        batch = config.get("batch_size")
        if status == OK and flops and batch and int(flops) % int(batch) == 0:
            self.known[shape_key(config)] = int(flops) // int(batch)

    def per_sequence(self, config: dict[str, Any]) -> int | None:
        return self.known.get(shape_key(config))
