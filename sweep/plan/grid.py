"""Grid expansion: a sweep specification in, the ordered list of trials out. Pure, no Ray.

The order is deterministic (GPU types in the order given, then the product of the axes in the
order they are written, then repeats), so that two runs of one sweep plan the same keys.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sweep.plan.config import BATCH, TrialConfig, choices, excerpt, field_names, field_role
from sweep.results.record import Trial, trial_key, utc_now

GRID, MAX_BATCH, MAX_SEQ = "grid", "max-batch", "max-seq"
MODES = (GRID, MAX_BATCH, MAX_SEQ)
# modes that search one value per group (their probes are not planned in advance)
SEARCH_MODES = (MAX_BATCH, MAX_SEQ)
# max-seq: lengths are searched in steps of this many tokens, from fixed.seq_len (FIRST_SEQ
# where not given)
SEQ_RESOLUTION = 128
FIRST_SEQ = 1024
# The longest a trial may take. Python's pipe and thread waits refuse an infinite or
# multi-week timeout (OverflowError), which would make every trial an error row.
MAX_TIMEOUT_S = 7 * 24 * 3600
# Repeats of each configuration: more is a typo (or a file meant to keep the fleet busy).
MAX_REPEATS = 1000
# max-batch: the first batch a search tries where fixed.batch_size does not say
FIRST_BATCH = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GPU_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as Ray writes them: V100, A100-80G


@dataclass(frozen=True)
class SweepSpec:
    """A named sweep: a grid of trial configurations. Validates itself: a bad field is one
    ValueError naming the field and what it allows (sweep.plan.sweepfile adds where it came from;
    each configuration's own check runs as the grid is expanded).

    axes: one or more sub-grids (field -> values); each one's product is merged over ``fixed``;
    several sub-grids express "seq_len 1024 only for the models that allow it". One mapping is
    taken as the only sub-grid; () plans ``fixed`` alone.
    fixed: field -> one value, the same for every trial (max-batch: ``batch_size`` is the first
    batch to try, FIRST_BATCH where it is not given).
    gpu_types: Ray accelerator types (V100, A100, H100, ...); (): any GPU.
    repeats: trials of each configuration (max-batch: 1).
    timeout_s: wall seconds one trial may take, its process start included.
    mode: GRID (every trial of the grid) or MAX_BATCH (the largest batch that fits, per group).
    batch_limit: in max-batch mode, the largest batch size tried.
    batch_tolerance: in max-batch mode, stop bisecting once the smallest batch that ran out of
    memory is within this fraction of the largest that fits (0: find the exact batch).
    seq_limit: in max-seq mode (the longest sequence that fits at fixed.batch_size, to
    SEQ_RESOLUTION tokens), the longest tried; None: each model's maximum positions (a limit
    past a model's is refused naming it).
    cpus_per_trial: CPUs a trial reserves (the only resource of a CPU trial; a GPU trial reserves
    one GPU besides).
    interference: the interference check's reference configuration (fields over ``fixed``): it
    runs alone on the node first, then again among the sweep's trials (interference_trials).
    pin_cpus: pin each GPU trial to its GPU's share of the node's cores.
    """

    name: str
    axes: tuple[dict[str, list[Any]], ...] = ()  # sub-grids: the sweep is the union of products
    fixed: dict[str, Any] = field(default_factory=dict)
    gpu_types: tuple[str, ...] = ()
    repeats: int = 1
    timeout_s: float = 600.0
    mode: str = GRID
    batch_limit: int = 4096
    batch_tolerance: float = 0.0
    seq_limit: int | None = None
    cpus_per_trial: int = 1
    description: str = ""
    # fields over ``fixed`` of the reference trial of the interference check (None: no check)
    interference: dict[str, Any] | None = None
    pin_cpus: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                "name: expected a name of letters, digits, '.', '_' or '-', "
                f"got {excerpt(self.name)}"
            )
        if not isinstance(self.description, str):
            raise ValueError(f"description: expected text, got {_type_name(self.description)}")
        if self.mode not in MODES:
            raise ValueError(f"mode: {excerpt(self.mode)} is not one of {', '.join(MODES)}")
        _check_fixed(self.fixed)
        self._set("axes", _checked_axes(self.axes, self.fixed))
        self._set("gpu_types", _checked_gpu_types(self.gpu_types))
        _check_integer("repeats", self.repeats, 1, MAX_REPEATS)
        _check_integer("batch_limit", self.batch_limit, 1)
        _check_integer("cpus_per_trial", self.cpus_per_trial, 1)
        tolerance = _number("batch_tolerance", self.batch_tolerance, "a fraction such as 0.02")
        if not 0 <= tolerance < 1:  # nan fails too
            raise ValueError(f"batch_tolerance: must be at least 0 and below 1, got {tolerance}")
        self._set("batch_tolerance", float(tolerance))
        timeout = _number("timeout_s", self.timeout_s, "a number of seconds")
        if not timeout > 0:
            raise ValueError(f"timeout_s: must be positive, got {timeout}")
        if not timeout <= MAX_TIMEOUT_S:  # .inf or huge: the trial's own timer cannot wait
            raise ValueError(
                f"timeout_s: must be at most {MAX_TIMEOUT_S} s (a week), got {timeout}"
            )
        self._set("timeout_s", float(timeout))
        if self.mode == MAX_BATCH:
            self._check_max_batch()
        if self.seq_limit is not None:
            _check_integer("seq_limit", self.seq_limit, SEQ_RESOLUTION)
            if self.seq_limit % SEQ_RESOLUTION:
                low = self.seq_limit // SEQ_RESOLUTION * SEQ_RESOLUTION
                raise ValueError(
                    f"seq_limit: {self.seq_limit} is not a multiple of the search's step "
                    f"({SEQ_RESOLUTION} tokens): say {low} or {low + SEQ_RESOLUTION}"
                )
        if self.mode == MAX_SEQ:
            self._check_max_seq()
        if self.interference is not None:
            if not isinstance(self.interference, dict) or not self.interference:
                raise ValueError(
                    "interference: expected the reference configuration's fields over fixed, "
                    "e.g. {model: bert-base-uncased, batch_size: 32}; "
                    f"got {excerpt(self.interference)}"
                )
            if self.mode in SEARCH_MODES:
                raise ValueError("interference: the interference check runs in grid mode only")
        if not isinstance(self.pin_cpus, bool):
            raise ValueError(f"pin_cpus: expected true or false, got {excerpt(self.pin_cpus)}")

    def _set(self, name: str, value: Any) -> None:
        """Store a field's normalised value (the dataclass is frozen once __post_init__ ends)."""
        object.__setattr__(self, name, value)

    def _check_max_batch(self) -> None:
        if any("batch_size" in g for g in self.axes):
            raise ValueError(
                "axes.batch_size: in max-batch mode the batch size is searched; "
                f"set fixed.batch_size to the first batch to try (default {FIRST_BATCH})"
            )
        if self.repeats != 1:
            raise ValueError("repeats: max-batch mode searches once per group (repeats: 1)")
        self._set("fixed", {"batch_size": FIRST_BATCH, **self.fixed})
        start = self.fixed["batch_size"]
        if isinstance(start, int) and not isinstance(start, bool) and start > self.batch_limit:
            raise ValueError(
                f"batch_limit: {self.batch_limit} is below the first batch size {start}"
            )

    def _check_max_seq(self) -> None:
        if any("seq_len" in g for g in self.axes):
            raise ValueError(
                "axes.seq_len: in max-seq mode the sequence length is searched; "
                f"set fixed.seq_len to the first length to try (default {FIRST_SEQ})"
            )
        if self.repeats != 1:
            raise ValueError("repeats: max-seq mode searches once per group (repeats: 1)")
        self._set("fixed", {"seq_len": FIRST_SEQ, **self.fixed})

    def seq_limit_of(self, config: TrialConfig) -> int:
        """The longest sequence a max-seq search of ``config`` tries: seq_limit, else the
        model's maximum positions."""
        from sweep.plan.catalog import get_spec

        return self.seq_limit or get_spec(config.model).max_seq_len


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_fixed(fixed: Any) -> None:
    if not isinstance(fixed, dict):
        raise ValueError(f"fixed: expected a mapping of field -> value, got {_type_name(fixed)}")
    known = field_names()
    for key, v in fixed.items():
        if key not in known:
            raise ValueError(f"fixed: unknown field {excerpt(key)}; known: {', '.join(known)}")
        if isinstance(v, (list, dict)):
            raise ValueError(
                f"fixed.{key}: expected one value, got {excerpt(v)} (put lists under axes)"
            )


def _checked_axes(axes: Any, fixed: dict[str, Any]) -> tuple[dict[str, list[Any]], ...]:
    """The sub-grids as a tuple, each checked: known fields, non-empty lists of allowed scalars,
    none also in ``fixed``. Messages name ``axes`` (one mapping) or ``axes[i]`` (a list)."""
    listed = isinstance(axes, (list, tuple))
    grids = list(axes) if listed else [axes]
    known = field_names()
    for i, grid in enumerate(grids):
        where = f"axes[{i}]" if listed else "axes"
        if not isinstance(grid, dict):
            raise ValueError(
                f"{where}: expected a mapping of field -> list of values, got {_type_name(grid)}"
            )
        for key, values in grid.items():
            if key not in known:
                raise ValueError(
                    f"{where}: unknown field {excerpt(key)}; known: {', '.join(known)}"
                )
            if not isinstance(values, list):
                raise ValueError(
                    f"{where}.{key}: expected a list of values, got "
                    f"{_type_name(values)} ({excerpt(values)}); write [{excerpt(values)}] for one "
                    "value"
                )
            if not values:
                raise ValueError(
                    f"{where}.{key}: is empty (a grid with an empty axis has no trials)"
                )
            allowed = choices(key)
            for v in values:
                if isinstance(v, (list, dict)):
                    raise ValueError(f"{where}.{key}: values must be scalars, got {excerpt(v)}")
                if allowed and v not in allowed:
                    raise ValueError(
                        f"{where}.{key}: {excerpt(v)} is not one of {', '.join(allowed)}"
                    )
        both = sorted(set(grid) & set(fixed))
        if both:
            raise ValueError(f"{', '.join(both)}: given both in {where} and in fixed")
    return tuple(grids)


def _checked_gpu_types(gpu_types: Any) -> tuple[str, ...]:
    if not isinstance(gpu_types, (list, tuple)) or not all(
        isinstance(g, str) and _GPU_TYPE.match(g) for g in gpu_types
    ):
        raise ValueError(
            "gpu_types: expected a list of Ray accelerator types such as [A100, H100], "
            f"got {excerpt(gpu_types)}"
        )
    if len(set(gpu_types)) != len(gpu_types):
        raise ValueError(f"gpu_types: {excerpt(gpu_types)} lists a type twice")
    return tuple(gpu_types)


def _check_integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {excerpt(value)}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be at most {maximum}, got {excerpt(value)}")


def _number(name: str, value: Any, what: str) -> float:
    """``value`` if it is a number (not a bool), else a ValueError saying ``what`` is expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected {what}, got {excerpt(value)}")
    return value


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
            if spec.mode == MAX_SEQ:
                _check_seq_limit(spec, config)
            for repeat in range(spec.repeats):
                trial = PlannedTrial(config, gpu_type, repeat)
                if trial.key in seen:  # two axis values that build the same config
                    continue
                seen.add(trial.key)
                planned.append(trial)
    return planned


def _check_seq_limit(spec: SweepSpec, config: TrialConfig) -> None:
    from sweep.plan.catalog import get_spec

    most = get_spec(config.model).max_seq_len
    if most < SEQ_RESOLUTION:
        raise ValueError(
            f"mode max-seq: {config.model} supports only {most} positions, fewer than one step "
            f"of the search ({SEQ_RESOLUTION} tokens): ask max-batch at a fixed seq_len instead"
        )
    if spec.seq_limit is not None and spec.seq_limit > most:
        raise ValueError(
            f"seq_limit: {spec.seq_limit} is past {config.model}'s maximum positions ({most} "
            "tokens): a max-seq search stops at the model's limit"
        )


def groups(planned: list[PlannedTrial]) -> dict[str, list[PlannedTrial]]:
    """Trials by group, each group in ascending batch size then repeat (the order they run)."""
    out: dict[str, list[PlannedTrial]] = {}
    for t in planned:
        out.setdefault(t.group, []).append(t)
    for members in out.values():
        members.sort(key=lambda t: (t.config.batch_size, t.repeat))
    return out


GROUP_PREFIX = "group:"


def claimed_keys(spec: SweepSpec, planned: list[PlannedTrial]) -> list[str]:
    """What a driver of ``spec`` claims in its database's lease (sweep/results/lease.py), so that
    no other driver runs the same configurations: the planned trials' keys, or, for a max-batch
    or max-seq search (its probes' sizes are not known in advance), its groups, as
    ``group:HASH``."""
    if spec.mode not in SEARCH_MODES:
        return [t.key for t in planned]
    return [GROUP_PREFIX + hashlib.sha256(g.encode()).hexdigest()[:16] for g in groups(planned)]
