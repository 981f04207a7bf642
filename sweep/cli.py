"""Command line: ``python -m sweep [trial|run|plan|presets|status|export] ...``.

Logs go to stderr; machine-readable output (records, tables) to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from sweep.plan.config import TrialConfig, choices, field_help


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrialConfig field, named after it (batch_size -> --batch-size)."""
    defaults = TrialConfig()
    for f in dataclasses.fields(TrialConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        allowed = choices(f.name)
        if isinstance(default, bool):
            parser.add_argument(
                flag,
                type=_bool,
                default=default,
                metavar="{true,false}",
                help=f"{field_help(f.name)} (default: {default})",
            )
        elif allowed:
            parser.add_argument(
                flag,
                choices=allowed,
                default=default,
                help=f"{field_help(f.name)} (default: {default})",
            )
        else:
            kind = type(default)
            text = field_help(f.name)
            if f.name == "model":
                from sweep.plan.catalog import CATALOG

                text = f"one of {', '.join(CATALOG)}, or a path to a config.json"
            parser.add_argument(
                flag, type=kind, default=default, help=f"{text} (default: {default})"
            )


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
    from sweep.commands import add_sweep_commands  # run, plan, presets, status, export, default

    add_sweep_commands(parser, sub)
    return parser


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
        return args.func(args)
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a socket of Ray's, a child's): a real error
        # stdout closed early (`python -m sweep plan seed | head`): what was asked for was
        # read; no traceback. Point stdout at devnull so that the interpreter's final flush
        # does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone (a pipe whose other end is closed polls POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False
