"""Grid expansion: a sweep specification in, the ordered list of trials out. Pure, no Ray.

The order is deterministic (GPU types in the order given, then the product of the axes in the
order they are written, then repeats), so that two runs of one sweep plan the same keys.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from sweep.plan.config import BATCH, TrialConfig, excerpt, field_role
from sweep.results.record import Trial, trial_key, utc_now

GRID, MAX_BATCH = "grid", "max-batch"
MODES = (GRID, MAX_BATCH)


@dataclass(frozen=True)
class SweepSpec:
    """A named sweep: a grid of trial configurations, validated (see sweep.plan.sweepfile).

    axes: one or more sub-grids (field -> values); each one's product is merged over ``fixed``;
    several sub-grids express "seq_len 1024 only for the models that allow it".

    timeout_s: wall seconds one trial may take, its process start included.
    batch_limit: in max-batch mode, the largest batch size tried.
    batch_tolerance: in max-batch mode, stop bisecting once the smallest batch that ran out of
    memory is within this fraction of the largest that fits (0: find the exact batch).
    cpus_per_trial: CPUs a trial reserves (the only resource of a CPU trial; a GPU trial reserves
    one GPU besides).
    interference: the interference check's reference configuration (fields over ``fixed``): it
    runs alone on the node first, then again among the sweep's trials (interference_trials).
    """

    name: str
    axes: tuple[dict[str, list[Any]], ...]  # sub-grids: the sweep is the union of their products
    fixed: dict[str, Any] = field(default_factory=dict)
    gpu_types: tuple[str, ...] = ()
    repeats: int = 1
    timeout_s: float = 600.0
    mode: str = GRID
    batch_limit: int = 4096
    batch_tolerance: float = 0.0
    cpus_per_trial: int = 1
    description: str = ""
    # fields over ``fixed`` of the reference trial of the interference check (None: no check)
    interference: dict[str, Any] | None = None
    pin_cpus: bool = False  # pin each GPU trial to its GPU's share of the node's cores


@dataclass(frozen=True)
class PlannedTrial:
    """One trial to run: what to measure, on which GPU type, which repeat."""

    config: TrialConfig
    gpu_type: str | None = None
    repeat: int = 0

    @property
    def key(self) -> str:
        return trial_key(self.config.to_dict(), self.gpu_type, self.repeat)

    def unrun(self, sweep: str, status: str, error: str, error_type: str) -> Trial:
        """The row for a trial the engine decided about without running it (skipped after an
        OOM, no GPU of its type, no result ever reached the driver)."""
        return Trial(
            config=self.config.to_dict(),
            status=status,
            gpu_type=self.gpu_type,
            repeat=self.repeat,
            sweep=sweep,
            error=error,
            error_type=error_type,
            finished_at=utc_now(),
        )

    @property
    def group(self) -> str:
        """Trials that differ only in batch size (and repeat): one OOM prunes the larger ones.
        The shape (``shape_fields``) and the measurement settings: a max-batch search runs for
        each seed or step count a sweep asks for."""
        rest = {k: v for k, v in self.config.to_dict().items() if field_role(k) != BATCH}
        return json.dumps({"config": rest, "gpu_type": self.gpu_type}, sort_keys=True)

    @property
    def uses_gpu(self) -> bool | None:
        """True: needs a GPU; False: runs on the CPU; None: whatever the cluster has (auto)."""
        if self.config.device == "cuda":
            return True
        if self.config.device == "cpu":
            return False
        return None

    def with_batch(self, batch_size: int) -> PlannedTrial:
        return PlannedTrial(self.config.replace(batch_size=batch_size), self.gpu_type, self.repeat)


# The repeat indices of the interference check's two rows (beyond any sweep's repeats, so that
# their keys are never a planned trial's): the reference alone on the node, then among the others.
INTERFERENCE_ALONE, INTERFERENCE_FULL = 1_000_000, 1_000_001


def interference_trials(spec: SweepSpec) -> list[PlannedTrial]:
    """[alone, full]: the reference configuration run alone on the node first, then handed out
    first among the sweep's trials (so that it measures while they fill the node's other GPUs);
    [] without an interference check. On the first GPU type of the sweep, if it names any."""
    if spec.interference is None:
        return []
    config = TrialConfig.from_dict({**spec.fixed, **spec.interference})
    gpu_type = spec.gpu_types[0] if spec.gpu_types else None
    return [PlannedTrial(config, gpu_type, r) for r in (INTERFERENCE_ALONE, INTERFERENCE_FULL)]


def combinations(spec: SweepSpec) -> list[tuple[dict[str, Any], list[str]]]:
    """(combination, its axis names) for the product of each sub-grid, merged over ``fixed``, in
    a deterministic order."""
    out = []
    for grid in spec.axes or ({},):
        names = list(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            combo = dict(spec.fixed)
            combo.update(zip(names, values, strict=True))
            out.append((combo, names))
    return out


def planned_count(spec: SweepSpec) -> int:
    """How many trials (max-batch: search groups) ``expand`` would return at most, from the
    lengths of the axes alone: a grid too large to expand is refused without expanding it
    (combinations that build the same config are counted each time here)."""
    per_type = 0
    for grid in spec.axes or ({},):
        n = 1
        for values in grid.values():
            n *= len(values)
        per_type += n
    return per_type * len(spec.gpu_types or (None,)) * spec.repeats


def expand(spec: SweepSpec) -> list[PlannedTrial]:
    """Every trial of the sweep. Raises ValueError naming the combination that is invalid.

    In max-batch mode, one entry per group (its batch size is the search's starting point).
    """
    planned: list[PlannedTrial] = []
    seen: set[str] = set()
    for gpu_type in spec.gpu_types or (None,):
        for combo, names in combinations(spec):
            try:
                config = TrialConfig.from_dict(combo)
            except (ValueError, TypeError) as exc:
                shown = ", ".join(f"{k}={excerpt(combo[k])}" for k in names) or "fixed values only"
                raise ValueError(
                    f"sweep {spec.name!r}: combination ({shown}) is invalid: {exc}"
                ) from None
            if gpu_type is not None and config.device == "cpu":
                raise ValueError(
                    f"sweep {spec.name!r}: gpu_types {list(spec.gpu_types)} "
                    "were given but device is cpu"
                )
            for repeat in range(spec.repeats):
                trial = PlannedTrial(config, gpu_type, repeat)
                if trial.key in seen:  # two axis values that build the same config
                    continue
                seen.add(trial.key)
                planned.append(trial)
    return planned


def groups(planned: list[PlannedTrial]) -> dict[str, list[PlannedTrial]]:
    """Trials by group, each group in ascending batch size then repeat (the order they run)."""
    out: dict[str, list[PlannedTrial]] = {}
    for t in planned:
        out.setdefault(t.group, []).append(t)
    for members in out.values():
        members.sort(key=lambda t: (t.config.batch_size, t.repeat))
    return out
