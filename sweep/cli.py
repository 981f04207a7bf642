"""Command line: ``python -m sweep [trial|run|plan|presets|status|export|compare|fits|import]``.

The bare command (no subcommand) runs the default sweep. Logs go to stderr; machine-readable
output (records, tables) to stdout. Bad input (a sweep file, a preset name, a database path) is
one ``error: ...`` line on stderr and exit status 2, before Ray starts and with the database
untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
from typing import Any

from sweep.engine.options import EngineOptions
from sweep.plan.config import TrialConfig
from sweep.plan.flags import add_trial_arguments
from sweep.report import add_capacities_flag, capacities_of, limits_path, write_limits


def cmd_trial(args: argparse.Namespace) -> int:
    from sweep.trial.run import run_trial

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrialConfig)}
    try:
        config = TrialConfig(**fields)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = run_trial(config)
    print(record.to_json(indent=2))
    return 0 if record.status == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("trial", help="run one trial in this process and print its record as JSON")
    add_trial_arguments(p)
    p.set_defaults(func=cmd_trial)
    add_sweep_commands(parser, sub)  # run, plan, presets, status, export, and the default
    return parser


# Each engine option's flag reads its default and help from its EngineOptions field.
_ENGINE_FIELDS = {f.name: f for f in dataclasses.fields(EngineOptions)}
DEFAULT_DB = _ENGINE_FIELDS["db"].default
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


def _option_flag(p: argparse.ArgumentParser, name: str, **kw: Any) -> None:
    """The flag of EngineOptions' field ``name``, with the field's default and help: a switch for
    a bool (--no-NAME for one on by default), else --NAME taking a value (``kw``: its type)."""
    f = _ENGINE_FIELDS[name]
    help, default = f.metadata["help"], f.default
    if default is True:
        p.add_argument(
            _flag_of(name, on=True), dest=name, action="store_false", help=f.metadata["off_help"]
        )
    elif default is False:
        p.add_argument(_flag_of(name), action="store_true", help=help)
    else:
        if default is not None:
            help += f" (default: {default:g})" if _numeric(default) else f" (default: {default})"
        p.add_argument(_flag_of(name), default=default, **{"help": help, **kw})


def _flag_of(name: str, on: bool = False) -> str:
    """The command line's flag of an engine option (``on``: one on by default, turned off)."""
    return ("--no-" if on else "--") + name.replace("_", "-")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _connection_flags(p: argparse.ArgumentParser) -> None:
    _option_flag(p, "address")


def _max_trials_flag(p: argparse.ArgumentParser) -> None:
    from sweep.plan.sweepfile import DEFAULT_MAX_TRIALS

    p.add_argument(
        "--max-trials",
        type=int,
        default=DEFAULT_MAX_TRIALS,
        help="refuse a sweep that plans more trials than this, counted before the grid is "
        f"expanded (default: {DEFAULT_MAX_TRIALS:,})",
    )


def _run_flags(p: argparse.ArgumentParser) -> None:
    _option_flag(p, "db")
    _max_trials_flag(p)
    _option_flag(p, "rerun")
    _connection_flags(p)
    _option_flag(p, "retries", type=int)
    _option_flag(p, "node_wait_s", type=float)
    _option_flag(p, "num_cpus", type=int)
    _option_flag(p, "preimport")
    _option_flag(p, "reuse_workers")
    _option_flag(p, "isolate")
    add_capacities_flag(p)
    _option_flag(p, "progress")
    _option_flag(p, "verbose")
    _option_flag(p, "trial_fn", help=argparse.SUPPRESS)  # for tests and experiments


def add_sweep_commands(parser: argparse.ArgumentParser, sub: Any) -> None:
    """Add run/plan/presets/status/export to ``python -m sweep`` and make the bare command run
    the default sweep."""
    _run_flags(parser)
    parser.set_defaults(func=cmd_default)

    p = sub.add_parser("run", help="run a sweep (a YAML file or a preset) and store every trial")
    p.add_argument("source", help="a preset name (see `presets`) or a path to a .yaml sweep file")
    _run_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="print the trials a sweep would run, without running them")
    p.add_argument("source")
    p.add_argument("--db", default=DEFAULT_DB)
    _max_trials_flag(p)
    _connection_flags(p)
    p.add_argument(
        "--no-cluster",
        action="store_true",
        help="do not start or join Ray to list the cluster's GPU types",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("presets", help="list the shipped sweeps")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("status", help="stored trials by sweep and status")
    p.add_argument("--db", default=DEFAULT_DB)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="write the stored trials as one flat table")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--sweep", default=None, help="only this sweep's trials")
    p.add_argument(
        "-o", "--output", default=None, help="file to write (default: stdout; parquet needs a file)"
    )
    p.add_argument(
        "--limits",
        action="store_true",
        help="the predicted largest batch per group and card size instead of the trials "
        "(with -o FILE they go to FILE.limits.EXT beside the trials anyway)",
    )
    add_capacities_flag(p)
    p.set_defaults(func=cmd_export)

    from sweep import compare, fits, report

    p = sub.add_parser("compare", help="one row per GPU for a model and sequence length")
    compare.add_arguments(p, DEFAULT_DB)
    p.set_defaults(func=compare.run)
    p = sub.add_parser("fits", help="the fine-tune planner: what fits which card, how long, $")
    fits.add_arguments(p, DEFAULT_DB)
    p.set_defaults(func=fits.run)

    p = sub.add_parser("import", help="load a spill file of records (a full disk) into --db")
    report.add_import_arguments(p, DEFAULT_DB)
    p.set_defaults(func=report.import_records)

    # A flag given before the subcommand (`python -m sweep --db x.db status`) must not be reset
    # by the subcommand's own default: there, the top-level value (or default) stands.
    top = {a.dest for a in parser._actions}
    for subparser in sub.choices.values():
        for action in subparser._actions:
            if action.dest in top and action.dest != "help":
                action.default = argparse.SUPPRESS


def _error(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _options(args: argparse.Namespace) -> EngineOptions:
    """The engine options the flags give; a bad one is a ValueError naming its flag."""
    from sweep.engine.options import OptionError

    given = {name: value for name, value in vars(args).items() if name in _ENGINE_FIELDS}
    try:
        return EngineOptions(**given)
    except OptionError as exc:
        on = _ENGINE_FIELDS[exc.field].default is True
        raise ValueError(f"{_flag_of(exc.field, on)}: {exc.problem}") from None


def _max_trials(args: argparse.Namespace) -> int:
    if args.max_trials < 1:
        raise ValueError(f"--max-trials: must be at least 1, got {args.max_trials}")
    return args.max_trials


def _check_db(path: str) -> None:
    """Open (creating if needed) the database now, so that a bad path fails before Ray starts."""
    from sweep.results.store import Store

    Store(path).close()


def _run(spec, args: argparse.Namespace) -> int:
    from sweep import report as exits
    from sweep.engine.run import SweepError, run_sweep
    from sweep.report import format_summary
    from sweep.results.store import StoreError

    capacities = capacities_of(args)  # checked before the run by cmd_run / cmd_default
    try:
        outcome = run_sweep(spec, _options(args))
    except SweepError as exc:
        return _error(exc)
    except StoreError as exc:  # the store or the lease failed mid-sweep: it stopped
        return exits.stopped(exc)
    except KeyboardInterrupt:  # a second Ctrl-C (or SIGTERM), before Tune could stop by itself
        return exits.interrupted(args.db)
    print(format_summary(outcome.frame, capacities))
    counts = ", ".join(f"{s} {n}" for s, n in sorted(outcome.counts.items()))
    not_run = f"; {outcome.not_run} not run (run again to resume)" if outcome.not_run else ""
    print(
        f"sweep {spec.name}: {len(outcome.keys) - outcome.not_run} rows ({counts}){not_run} in "
        f"{args.db}; {outcome.wall_s:.1f} s",
        file=sys.stderr,
    )
    if outcome.interrupted:
        return exits.interrupted(args.db, len(outcome.keys) - outcome.not_run)
    return exits.finished(outcome, args.db)


def cmd_run(args: argparse.Namespace) -> int:
    from cluster.ray_cluster import ClusterUnreachable, check_address
    from sweep.plan import sweepfile
    from sweep.results.store import StoreError

    try:
        spec = sweepfile.load(args.source, max_trials=_max_trials(args))
        options = _options(args)
        capacities_of(args)
        if options.num_cpus is not None and options.num_cpus < spec.cpus_per_trial:
            raise ValueError(
                f"--num-cpus: {options.num_cpus} is fewer than the {spec.cpus_per_trial} CPUs "
                f"one trial of {spec.name} reserves (cpus_per_trial): nothing could run"
            )
        check_address(options.address)
        _check_db(options.db)
    except (ValueError, StoreError, ClusterUnreachable) as exc:
        return _error(exc)
    return _run(spec, args)


def cmd_default(args: argparse.Namespace) -> int:
    """No subcommand: the ``seed`` sweep where there are GPUs, else ``smoke`` on the CPU."""
    from cluster import ray_cluster
    from sweep.plan import sweepfile

    try:
        options = _options(args)
        capacities_of(args)
        ray_cluster.check_address(options.address)
        _check_db(options.db)
    except (ValueError, ray_cluster.ClusterUnreachable) as exc:
        return _error(exc)
    from sweep.engine.run import connect

    connect(options)
    name = "seed" if ray_cluster.total_gpus() > 0 else "smoke"
    print(
        f"python -m sweep: {ray_cluster.describe()}; running the {name!r} preset "
        f"(see `python -m sweep presets`)",
        file=sys.stderr,
    )
    return _run(sweepfile.load(name), args)


def cmd_plan(args: argparse.Namespace) -> int:
    from cluster.ray_cluster import ClusterUnreachable
    from sweep.plan import sweepfile
    from sweep.report import plan_lines
    from sweep.results.store import StoreError

    try:
        spec = sweepfile.load(args.source, max_trials=_max_trials(args))
        types = has_gpu = None
        if not args.no_cluster:
            from cluster import ray_cluster
            from sweep.engine.quiet import quiet_ray

            quiet_ray()
            ray_cluster.connect(args.address)
            types, has_gpu = ray_cluster.gpu_types(), ray_cluster.total_gpus() > 0
        lines = plan_lines(spec, args.db, types, has_gpu)
        if not args.no_cluster:
            free = ", ".join(f"{k} {v:g}" for k, v in sorted(ray_cluster.free_gpus().items()))
            lines.insert(2, f"free GPUs now: {free}")
    except (ValueError, StoreError, ClusterUnreachable) as exc:
        return _error(exc)
    print("\n".join(lines))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from sweep.plan import sweepfile
    from sweep.plan.grid import SEARCH_MODES, expand

    names = sweepfile.preset_names()
    width = max(map(len, names))
    for name in names:
        spec = sweepfile.load(name)
        n = len(expand(spec))
        unit = "searches" if spec.mode in SEARCH_MODES else "trials"
        print(f"{name:<{width}} {n:>4} {unit:<8} {spec.description}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sweep.report import stored_summary
    from sweep.results.store import StoreError

    try:
        print(stored_summary(args.db))
    except StoreError as exc:
        return _error(exc)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sweep.results.frame import load_frame
    from sweep.results.store import StoreError

    if args.format == "parquet" and not args.output:
        return _error(ValueError("--format parquet needs -o FILE"))
    try:
        capacities = capacities_of(args)
        frame = load_frame(args.db, sweep=args.sweep)
    except (ValueError, StoreError) as exc:
        return _error(exc)
    out = args.output
    try:
        if args.limits:
            write_limits(frame, capacities, args.format, out)
            return 0
        from sweep.analysis.parity import with_parity

        frame = with_parity(frame)  # each row's loss against its configuration without a knob
        if args.format == "csv":
            frame.to_csv(out if out else sys.stdout, index=False)
        elif args.format == "jsonl":
            # JSONL is the lossless form: one full Trial record per line (Trial.from_json reads it).
            from sweep.results.store import Store

            with Store(args.db, readonly=True) as store:
                text = "".join(t.to_json() + "\n" for t in store.trials(args.sweep))
            if out:
                with open(out, "w", encoding="utf-8") as fh:
                    fh.write(text)
            else:
                sys.stdout.write(text)
        else:
            try:
                frame.to_parquet(out, index=False)
            except ImportError as exc:
                return _error(ValueError(f"parquet needs pyarrow (pip install pyarrow): {exc}"))
    except ImportError as exc:  # --limits --format parquet without pyarrow
        return _error(ValueError(f"parquet needs pyarrow (pip install pyarrow): {exc}"))
    except OSError as exc:  # a directory that does not exist, no permission, a full disk
        where = f"-o {out!r}" if out else "the output"
        return _error(ValueError(f"{where}: cannot be written ({exc})"))
    if out:
        print(f"wrote {len(frame)} trials to {os.path.abspath(out)}", file=sys.stderr)
        try:
            write_limits(frame, capacities, args.format, limits_path(out))
        except OSError as exc:
            return _error(ValueError(f"{limits_path(out)}: cannot be written ({exc})"))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # a full disk or /dev/full fails here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a socket of Ray's, a child's): a real error
        # stdout closed early (`python -m sweep plan seed | head`): what was asked for was
        # read; no traceback. Point stdout at devnull so that the interpreter's final flush
        # does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    except OSError as exc:
        if exc.errno not in _OUTPUT_FULL:
            raise
        # stdout cannot take the output (a full disk, `> /dev/full`): one line, and stdout
        # pointed at devnull so that the interpreter's final flush does not raise again
        print(f"error: the output cannot be written: {exc.strerror}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# errno of a write that failed for want of room (a full disk or quota, /dev/full) or a dead device
_OUTPUT_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EIO}


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone (a pipe whose other end is closed polls POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False
