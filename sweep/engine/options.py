"""How to run a sweep (what to run is the SweepSpec): ``EngineOptions``, a dataclass that
validates itself. Each field states its default and its help once, in its metadata; the command
line builds ``python -m sweep run``'s flags from them (sweep/cli.py), so the help here is what
``--help`` prints. No Ray here: the command line reads this module to build its parser.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

TRIAL_FN = "sweep.trial.run:run_trial"


def _option(default: Any, help: str, off_help: str | None = None) -> Any:
    """An EngineOptions field with its help text. ``off_help``: for an option that is on by
    default, what its command line switch (--no-NAME) does."""
    metadata = {"help": help} if off_help is None else {"help": help, "off_help": off_help}
    return dataclasses.field(default=default, metadata=metadata)


class OptionError(ValueError):
    """A bad engine option: ``field`` names it, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass
class EngineOptions:
    """How to run a sweep (what to run is the SweepSpec). Times in seconds."""

    db: str = _option("results.db", "results database")
    rerun: bool = _option(False, "run trials again even if stored with a final status")
    address: str | None = _option(
        None, "Ray cluster to join (default: $RAY_ADDRESS, else a local instance)"
    )
    trial_fn: str = _option(
        TRIAL_FN,
        '"module:function" taking a TrialConfig and returning a Trial, imported in the worker '
        "(another one for tests and experiments)",
    )
    retries: int = _option(
        1,
        "restarts of a trial whose process died, e.g. a lost node; a trial that dies every time "
        "ends as one crashed row after 1 + retries attempts",
    )
    node_wait_s: float = _option(
        120.0,
        "how long trials whose kind of node is gone (lost mid-sweep) wait for one to come back "
        "before they are stored as no_gpu_type, for a resume to run",
    )
    kill_grace_s: float = _option(
        60.0,
        "a trial still running this long past its timeout (its own watchdog could not end it, "
        "e.g. a hang holding the GIL) is killed from the driver and stored as timeout",
    )
    # Off by default: with a fresh process per trial the import is on the trial's critical path
    # either way, and it measured slower (docs/DECISIONS.md, "the worker pre-import is off by
    # default").
    preimport: bool = _option(
        False,
        "import torch/transformers as each Ray worker starts (Ray's worker_process_setup_hook; "
        "measured slower with one process per trial: benchmarks/sweep_overhead.py)",
    )
    # Clean CUDA state per trial without paying interpreter start and imports per trial; the Ray
    # worker itself is then reused (it only launches trials).
    isolate: bool = _option(
        True,
        "run each trial in a fresh process forked from the worker's warm fork server "
        "(sweep/engine/forkserver.py)",
        off_help="run each trial inside the Ray worker process instead of a fresh process forked "
        "from the worker's warm fork server (the default; see sweep/engine/forkserver.py)",
    )
    # Off by default: the next trial would see the previous one's memory, caches and CUDA state.
    reuse_workers: bool = _option(
        False,
        "run trials one after another in the same Ray worker process instead of a fresh "
        "process each (faster start; the next trial may see the previous one's process state)",
    )
    progress: bool = _option(
        True, "a progress line on stderr", off_help="no progress line on stderr"
    )
    verbose: bool = _option(False, "Ray's and the workers' own logs")
    num_cpus: int | None = _option(None, "CPUs of a local Ray instance (default: all)")
    storage_path: str | None = _option(
        None, "Tune's scratch directory (default: a temporary one, removed after the run)"
    )

    def __post_init__(self) -> None:
        if not _integer(self.retries) or self.retries < 0:
            raise OptionError("retries", f"must be >= 0, got {self.retries}")
        if not _number(self.node_wait_s) or not 0 <= self.node_wait_s < math.inf:  # nan fails
            raise OptionError(
                "node_wait_s", f"must be a finite number >= 0, got {self.node_wait_s}"
            )
        if not _number(self.kill_grace_s) or not 0 < self.kill_grace_s < math.inf:
            raise OptionError(
                "kill_grace_s", f"must be a finite number > 0, got {self.kill_grace_s}"
            )
        if self.num_cpus is not None and (not _integer(self.num_cpus) or self.num_cpus < 1):
            # 0: no trial could ever be scheduled (the sweep would wait forever)
            raise OptionError("num_cpus", f"must be at least 1, got {self.num_cpus}")
        if not isinstance(self.trial_fn, str) or not self.trial_fn.strip():
            raise OptionError("trial_fn", f'expected "module:function", got {self.trial_fn!r}')


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
