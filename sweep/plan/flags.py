"""The trial's command-line flags, one per ``TrialConfig`` field, and the command that
reproduces a stored row: kept side by side because each must match the other (a round-trip test:
parse(reproduce_command(c)) == c). Pure: argparse and the config, nothing heavy, so the web app
can show a row's command without loading the command line's handlers."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
from typing import Any

from sweep.plan.config import TrialConfig, choices, field_help, field_names


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_compile(text: str) -> bool | str:
    """--compile: true/false words as for a bool field, or a torch.compile mode name."""
    from sweep.plan.config import COMPILE_MODES

    try:
        return parse_bool(text)
    except argparse.ArgumentTypeError:
        if text in COMPILE_MODES:
            return text
        raise argparse.ArgumentTypeError(
            f"expected true, false or a mode ({', '.join(COMPILE_MODES)}), got {text!r}"
        ) from None


def field_argument(name: str) -> dict[str, Any]:
    """argparse's ``type`` (or ``choices``) and ``metavar`` for the flag of field ``name``."""
    default = getattr(TrialConfig(), name)
    if name == "compile":
        return {"type": parse_compile, "metavar": "{false,true,MODE}"}
    if default is None:  # an optional number (capacity_gb): absent means none
        return {"type": float, "metavar": "N"}
    if isinstance(default, bool):
        return {"type": parse_bool, "metavar": "{true,false}"}
    if choices(name):
        return {"choices": choices(name)}
    return {"type": type(default)}


def help_text(text: str) -> str:
    """``text`` as argparse help: argparse formats help with %, so a literal % is doubled (a
    field's "a few % slower" printed argparse's internals)."""
    return text.replace("%", "%%")


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrialConfig field, named after it (batch_size -> --batch-size)."""
    defaults = TrialConfig()
    for f in dataclasses.fields(TrialConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = field_help(f.name)
        if f.name == "model":
            from sweep.plan.catalog import CATALOG

            text = f"one of {', '.join(CATALOG)}, or a path to a config.json"
        parser.add_argument(
            flag,
            default=default,
            help=help_text(f"{text} (default: {default})"),
            **field_argument(f.name),
        )


# A boolean field's value as a frame may hold it -> its flag's text.
_FLAG_BOOLS = {
    "true": "true",
    "1": "true",
    "1.0": "true",
    "false": "false",
    "0": "false",
    "0.0": "false",
}


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def reproduce_command(config: dict[str, Any]) -> str:
    """``python -m sweep trial`` with one flag per config field (``add_trial_arguments``), so that
    a changed default cannot change what it runs; a field missing from ``config`` (or None/NaN, as
    in a frame row) gets today's default. Values may come as a frame holds them: "True", 1.0."""
    defaults = TrialConfig().to_dict()
    parts = ["python", "-m", "sweep", "trial"]
    for name in field_names():
        value = config.get(name) if _given(config.get(name)) else defaults[name]
        if value is None:  # an optional field at none: no flag (its default)
            continue
        if isinstance(defaults[name], bool):
            # true/false as a frame may hold them; any other value (a mode name) as it is
            text = _FLAG_BOOLS.get(str(value).lower(), str(value))
        elif isinstance(defaults[name], int):
            text = str(int(float(value)))
        elif isinstance(defaults[name], float):
            text = repr(float(value))
        else:
            text = str(value)
        parts += ["--" + name.replace("_", "-"), text]
    return " ".join(shlex.quote(p) for p in parts)
