"""Sweep files and presets: YAML in, a validated ``SweepSpec`` out, or one ValueError naming the
problem. Nothing here touches Ray or the database, so bad input is refused before anything runs.

A sweep file uses the trial configuration's own field names::

    name: bert-cpu
    axes:              # the grid is the product of these lists
      model: [bert-tiny, bert-mini]
      batch_size: [8, 32]
    fixed:             # the same for every trial
      precision: fp32
      device: cpu
    gpu_types: []      # Ray accelerator types (V100, A100, H100, H200, ...); empty: any GPU
    repeats: 1
    timeout_s: 600     # per trial
    mode: grid         # or max-batch: find the largest batch that fits, per group
    batch_tolerance: 0 # max-batch: stop within this fraction of the answer (0.02: 2%; 0: exact)
    cpus_per_trial: 1  # CPUs a trial reserves; more than any node has is refused at the start
    interference: {model: bert-base-uncased, batch_size: 32}  # optional: this configuration
                       # (over fixed) alone on the node first, then again among the sweep's trials
    pin_cpus: false    # pin each GPU trial to its GPU's share of the node's cores
"""

from __future__ import annotations

import os
import re
import stat
from importlib import resources
from typing import Any

import yaml

from sweep.plan import yamlsafe
from sweep.plan.config import choices, excerpt, field_names
from sweep.plan.grid import MAX_BATCH, MODES, SweepSpec, expand, interference_trials, planned_count

TOP_KEYS = (
    "name",
    "description",
    "mode",
    "axes",
    "fixed",
    "gpu_types",
    "repeats",
    "timeout_s",
    "batch_limit",
    "batch_tolerance",
    "cpus_per_trial",
    "interference",
    "pin_cpus",
)
# The longest a trial may take. Python's pipe and thread waits refuse an infinite or
# multi-week timeout (OverflowError), which would make every trial an error row.
MAX_TIMEOUT_S = 7 * 24 * 3600
# Trials a sweep may plan unless --max-trials says otherwise: the grid's size is computed from
# the lengths of its axes before anything is expanded, so a tiny file of 10**7 combinations is
# refused in microseconds instead of filling memory.
DEFAULT_MAX_TRIALS = 100_000
# Repeats of each configuration: more is a typo (or a file meant to keep the fleet busy).
MAX_REPEATS = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GPU_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as Ray writes them: V100, A100-80G


class SweepFileError(ValueError):
    """A sweep file or preset that cannot be run; the message names the file and the problem."""


def preset_names() -> list[str]:
    files = resources.files("sweep.plan").joinpath("presets")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def _preset_text(name: str) -> str:
    return (
        resources.files("sweep.plan")
        .joinpath("presets", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )


def load(source: str, max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """A preset name or a path to a YAML sweep file -> a validated SweepSpec."""
    if source in preset_names():
        return parse(_preset_text(source), origin=f"preset {source!r}", max_trials=max_trials)
    looks_like_path = (
        source.endswith((".yaml", ".yml")) or os.sep in source or os.path.lexists(source)
    )
    if not looks_like_path:
        raise SweepFileError(
            f"unknown preset {excerpt(source)}; presets: {', '.join(preset_names())} "
            "(or give a path to a .yaml sweep file)"
        )
    shown = excerpt(source, 200)
    try:
        st = os.stat(source)  # never open before knowing what it is: a FIFO's open blocks
    except FileNotFoundError:
        raise SweepFileError(f"sweep file {shown} does not exist") from None
    except OSError as exc:
        raise SweepFileError(f"sweep file {shown} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SweepFileError(f"sweep file {shown} is {_file_kind(st.st_mode)}, not a file")
    if st.st_size > yamlsafe.MAX_FILE_BYTES:
        raise SweepFileError(
            f"sweep file {shown} is {st.st_size:,} bytes, more than a sweep file may be "
            f"({yamlsafe.MAX_FILE_BYTES:,})"
        )
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read(yamlsafe.MAX_FILE_BYTES + 1)  # it may have grown since the stat
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepFileError(f"sweep file {shown} cannot be read: {exc}") from None
    default_name = os.path.splitext(os.path.basename(source))[0]
    return parse(
        text, origin=f"sweep file {shown}", default_name=default_name, max_trials=max_trials
    )


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _type_name(value: Any) -> str:
    return type(value).__name__


def parse(
    text: str,
    origin: str = "sweep",
    default_name: str | None = None,
    max_trials: int = DEFAULT_MAX_TRIALS,
) -> SweepSpec:
    """Parse and validate YAML text; every expanded configuration is built, so that its own
    validation runs. Raises SweepFileError naming ``origin`` and the problem. Values are quoted
    in messages only as short excerpts; a grid of more than ``max_trials`` trials is refused
    before it is expanded."""

    def fail(msg: str) -> SweepFileError:
        return SweepFileError(f"{origin}: {msg}")

    if len(text) > yamlsafe.MAX_FILE_BYTES:
        raise fail(f"is more than {yamlsafe.MAX_FILE_BYTES:,} characters")
    try:
        raw = yamlsafe.load(text)
    except yamlsafe.YamlLimitError as exc:
        raise fail(str(exc)) from None
    except yaml.YAMLError as exc:
        raise fail(f"does not parse as YAML: {' '.join(str(exc).split())[:300]}") from None
    if not isinstance(raw, dict):
        raise fail(f"expected a mapping with keys {', '.join(TOP_KEYS)}, got {_type_name(raw)}")
    unknown = sorted(set(map(str, raw)) - set(TOP_KEYS))
    if unknown:
        shown = ", ".join(k if len(k) <= 40 else k[:40] + "..." for k in unknown[:5]) + (
            ", ..." if len(unknown) > 5 else ""
        )
        raise fail(f"unknown key(s) {shown}; known: {', '.join(TOP_KEYS)}")

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(
            f"name: expected a name of letters, digits, '.', '_' or '-', got {excerpt(name)}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail(f"description: expected text, got {_type_name(description)}")

    mode = raw.get("mode", "grid")
    if mode not in MODES:
        raise fail(f"mode: {excerpt(mode)} is not one of {', '.join(MODES)}")

    known_fields = field_names()
    axes_raw = raw.get("axes") or {}
    # axes: one mapping (a grid) or a list of mappings (a union of grids).
    grids = axes_raw if isinstance(axes_raw, list) else [axes_raw]
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise fail(f"fixed: expected a mapping of field -> value, got {_type_name(fixed)}")
    for key, v in fixed.items():
        if key not in known_fields:
            raise fail(f"fixed: unknown field {excerpt(key)}; known: {', '.join(known_fields)}")
        if isinstance(v, (list, dict)):
            raise fail(f"fixed.{key}: expected one value, got {excerpt(v)} (put lists under axes)")
    if not grids:
        raise fail("axes: is an empty list (no grid, no trials)")
    for i, grid in enumerate(grids):
        where = "axes" if len(grids) == 1 and not isinstance(axes_raw, list) else f"axes[{i}]"
        if not isinstance(grid, dict):
            raise fail(
                f"{where}: expected a mapping of field -> list of values, got {_type_name(grid)}"
            )
        for key, values in grid.items():
            if key not in known_fields:
                raise fail(
                    f"{where}: unknown field {excerpt(key)}; known: {', '.join(known_fields)}"
                )
            if not isinstance(values, list):
                raise fail(
                    f"{where}.{key}: expected a list of values, got "
                    f"{_type_name(values)} ({excerpt(values)}); write [{excerpt(values)}] for one "
                    "value"
                )
            if not values:
                raise fail(f"{where}.{key}: is empty (a grid with an empty axis has no trials)")
            allowed = choices(key)
            for v in values:
                if isinstance(v, (list, dict)):
                    raise fail(f"{where}.{key}: values must be scalars, got {excerpt(v)}")
                if allowed and v not in allowed:
                    raise fail(f"{where}.{key}: {excerpt(v)} is not one of {', '.join(allowed)}")
        both = sorted(set(grid) & set(fixed))
        if both:
            raise fail(f"{', '.join(both)}: given both in {where} and in fixed")
    axes = tuple(grids)

    gpu_types = raw.get("gpu_types") or []
    if not isinstance(gpu_types, list) or not all(
        isinstance(g, str) and _GPU_TYPE.match(g) for g in gpu_types
    ):
        raise fail(
            f"gpu_types: expected a list of Ray accelerator types such as [A100, H100], "
            f"got {excerpt(gpu_types)}"
        )
    if len(set(gpu_types)) != len(gpu_types):
        raise fail(f"gpu_types: {excerpt(gpu_types)} lists a type twice")

    def integer(key: str, default: int, minimum: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"{key}: expected an integer, got {excerpt(value)}")
        if value < minimum:
            raise fail(f"{key}: must be at least {minimum}, got {value}")
        return value

    repeats = integer("repeats", 1, 1)
    if repeats > MAX_REPEATS:
        raise fail(f"repeats: must be at most {MAX_REPEATS}, got {excerpt(repeats)}")
    batch_limit = integer("batch_limit", 4096, 1)
    cpus_per_trial = integer("cpus_per_trial", 1, 1)
    batch_tolerance = raw.get("batch_tolerance", 0)
    if isinstance(batch_tolerance, bool) or not isinstance(batch_tolerance, (int, float)):
        raise fail(
            f"batch_tolerance: expected a fraction such as 0.02, got {excerpt(batch_tolerance)}"
        )
    if not 0 <= batch_tolerance < 1:  # nan fails too
        raise fail(f"batch_tolerance: must be at least 0 and below 1, got {batch_tolerance}")
    timeout_s = raw.get("timeout_s", 600)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise fail(f"timeout_s: expected a number of seconds, got {excerpt(timeout_s)}")
    if not timeout_s > 0:
        raise fail(f"timeout_s: must be positive, got {timeout_s}")
    if not timeout_s <= MAX_TIMEOUT_S:  # .inf or huge: the trial's own timer cannot wait that long
        raise fail(f"timeout_s: must be at most {MAX_TIMEOUT_S} s (a week), got {timeout_s}")

    if mode == MAX_BATCH:
        if any("batch_size" in g for g in axes):
            raise fail(
                "axes.batch_size: in max-batch mode the batch size is searched; "
                "set fixed.batch_size to the first batch to try (default 1)"
            )
        if repeats != 1:
            raise fail("repeats: max-batch mode searches once per group (repeats: 1)")
        fixed = {"batch_size": 1, **fixed}
        start = fixed["batch_size"]
        if isinstance(start, int) and not isinstance(start, bool) and start > batch_limit:
            raise fail(f"batch_limit: {batch_limit} is below the first batch size {start}")

    interference = raw.get("interference")
    if interference is not None:
        if not isinstance(interference, dict) or not interference:
            raise fail(
                "interference: expected the reference configuration's fields over fixed, "
                f"e.g. {{model: bert-base-uncased, batch_size: 32}}; got {excerpt(interference)}"
            )
        if mode == MAX_BATCH:
            raise fail("interference: the interference check runs in grid mode only")
    pin_cpus = raw.get("pin_cpus", False)
    if not isinstance(pin_cpus, bool):
        raise fail(f"pin_cpus: expected true or false, got {excerpt(pin_cpus)}")
    spec = SweepSpec(
        name=name,
        axes=axes,
        fixed=fixed,
        gpu_types=tuple(gpu_types),
        repeats=repeats,
        timeout_s=float(timeout_s),
        mode=mode,
        batch_limit=batch_limit,
        batch_tolerance=float(batch_tolerance),
        cpus_per_trial=cpus_per_trial,
        description=description,
        interference=interference,
        pin_cpus=pin_cpus,
    )
    n = planned_count(spec)  # from the axes' lengths: nothing is expanded yet
    if n > max_trials:
        raise fail(
            f"plans {n:,} {'search groups' if mode == MAX_BATCH else 'trials'}, more than "
            f"--max-trials {max_trials:,} (fewer axis values, or raise --max-trials)"
        )
    try:
        expand(spec)  # builds every TrialConfig: their own validation names the field
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        interference_trials(spec)
    except ValueError as exc:
        raise fail(f"interference: {exc}") from None
    return spec
