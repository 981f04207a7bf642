"""Which schedule runs a group, by the sweep's mode: the one table of modes (``SCHEDULES``) and
``schedule_for``, apart from the schedules so that a new one (sweep/engine/seq_search.py builds on
BatchSearch) is a module of its own plus one entry here."""

from __future__ import annotations

from collections.abc import Callable

from sweep.engine.schedule import BatchSearch, GridQueue, MetricsLookup, Schedule, StoredLookup
from sweep.engine.seeded import seed_families
from sweep.engine.seq_search import SeqSearch
from sweep.plan.grid import GRID, MAX_BATCH, MAX_SEQ, PlannedTrial, SweepSpec

# How each mode builds a group's schedule: (spec, members, stored, stored_metrics) -> Schedule.
SCHEDULES: dict[str, Callable[..., Schedule]] = {
    GRID: lambda spec, members, stored, metrics: GridQueue(members, stored),
    # one member: its batch is the first to try
    MAX_BATCH: lambda spec, members, stored, metrics: BatchSearch(
        members[0], stored, spec.batch_limit, spec.batch_tolerance, stored_metrics=metrics
    ),
    # one member: its seq_len is the first to try; up to seq_limit or the model's positions
    MAX_SEQ: lambda spec, members, stored, metrics: SeqSearch(
        members[0], stored, spec.seq_limit_of(members[0].config), stored_metrics=metrics
    ),
}


def schedule_for(
    spec: SweepSpec,
    members: list[PlannedTrial],
    stored: StoredLookup,
    stored_metrics: MetricsLookup | None = None,
) -> Schedule:
    """The schedule of one group of ``spec``'s trials (``members``, ascending batch), by mode."""
    return SCHEDULES[spec.mode](spec, members, stored, stored_metrics)


def schedules_for(
    spec: SweepSpec,
    member_lists: list[list[PlannedTrial]],
    stored: StoredLookup,
    stored_metrics: MetricsLookup | None = None,
) -> list[Schedule]:
    """The schedule of each group, in order; a capped search seeded from its uncapped family
    where the sweep has one (sweep/engine/seeded.py)."""
    return seed_families([schedule_for(spec, m, stored, stored_metrics) for m in member_lists])
