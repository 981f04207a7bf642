"""Sweep files and presets: YAML in, a validated ``SweepSpec`` out, or one ValueError naming the
problem. Nothing here touches Ray or the database, so bad input is refused before anything runs.
This module only reads the YAML and maps it onto SweepSpec, which checks its own fields (and
states their defaults); then every planned configuration is built, so that its own check runs.

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
    mode: grid         # or max-batch / max-seq: the largest batch / longest sequence that fits,
                       # per group (seq_limit: the longest tried; none: the model's limit)
    batch_tolerance: 0 # max-batch: stop within this fraction of the answer (0.02: 2%; 0: exact)
    cpus_per_trial: 1  # CPUs a trial reserves; more than any node has is refused at the start
    interference: {model: bert-base-uncased, batch_size: 32}  # optional: this configuration
                       # (over fixed) alone on the node first, then again among the sweep's trials
    pin_cpus: false    # pin each GPU trial to its GPU's share of the node's cores
"""

from __future__ import annotations

import dataclasses
import os
import stat
from importlib import resources
from typing import Any

import yaml

from sweep.plan import yamlsafe
from sweep.plan.config import excerpt
from sweep.plan.grid import SEARCH_MODES, SweepSpec, expand, interference_trials, planned_count

# The keys of a sweep file: the fields of SweepSpec, which checks their values.
TOP_KEYS = tuple(f.name for f in dataclasses.fields(SweepSpec))
# Keys whose empty value (null, [], {}) means "not given": the field's default.
_EMPTY_IS_DEFAULT = ("axes", "fixed", "gpu_types")
# Trials a sweep may plan unless --max-trials says otherwise: the grid's size is computed from
# the lengths of its axes before anything is expanded, so a tiny file of 10**7 combinations is
# refused in microseconds instead of filling memory.
DEFAULT_MAX_TRIALS = 100_000


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

    values = {k: v for k, v in raw.items() if v or k not in _EMPTY_IS_DEFAULT}
    values.setdefault("name", default_name)
    try:
        spec = SweepSpec(**values)  # checks every field, naming it
    except ValueError as exc:
        raise fail(str(exc)) from None
    n = planned_count(spec)  # from the axes' lengths: nothing is expanded yet
    if n > max_trials:
        raise fail(
            f"plans {n:,} {'search groups' if spec.mode in SEARCH_MODES else 'trials'}, more than "
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
