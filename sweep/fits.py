"""``python -m sweep fits``: the fine-tune planner on the command line.

"Which card, which method, which knobs, how long and how much to fine-tune this model on N
tokens?": one row per card size and method, then per measured GPU type and method. The table is
``sweep.analysis.planner.plan`` (the app's first tab shows the same); this module parses the
arguments, loads the rows and prints.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from sweep.compare import add_data_flags, load_rows
from sweep.plan.config import FINETUNES

# header in the printed table, column of sweep.analysis.planner.COLUMNS
SHORT_HEADERS = {
    "Card": "card",
    "Method": "method",
    "Fits": "fits",
    "Known from": "known from",
    "Largest batch": "max batch",
    "Longest sequence": "max seq",
    "Longest with": "max seq with",
    "Knobs": "knobs",
    "Tokens/s": "tokens/s",
    "At batch": "at batch",
    "Hours": "hours",
    "$": "$",
    "Loss parity": "loss parity",
}


class UsageError(ValueError):
    """A bad flag value: one ``error:`` line naming the flag, exit status 2."""


def parse_tokens(text: str) -> float:
    """--tokens: 50M, 1.5B, 2e9 (``sweep.analysis.planner.parse_tokens``); UsageError."""
    from sweep.analysis.planner import parse_tokens as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(f"--tokens: {exc}") from None


def parse_methods(values: list[str] | None) -> list[str]:
    """--method values (repeatable, or comma-separated) in the order given; all by default."""
    out: list[str] = []
    for v in values or []:
        for name in (x.strip().lower() for x in v.split(",")):
            if name not in FINETUNES:
                raise UsageError(f"--method: {name[:40]!r} is not one of {', '.join(FINETUNES)}")
            if name not in out:
                out.append(name)
    return out or list(FINETUNES)


def price_table(path: str | None, entries: list[str] | None):
    """The price table: the defaults, or the CSV of --prices (GPU name, $ per GPU-hour[,
    source]), then each --price NAME=USD replacing the row of that name or added."""
    import pandas as pd

    from sweep.analysis.cost import DEFAULT_PRICES, parse_prices

    table = DEFAULT_PRICES.copy()
    if path:
        try:
            raw = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--prices: {path!r} cannot be read as CSV ({exc})") from None
        table, problems = parse_prices(raw)
        if problems:
            raise UsageError(f"--prices: {path!r}: {problems[0]}")
    for entry in entries or []:
        name, sep, usd = entry.partition("=")
        good, problems = parse_prices([[name.strip(), usd, "--price"]])
        if not sep or problems or good.empty:
            why = problems[0] if problems else "expected GPU=USD_PER_HOUR, e.g. H100=2.49"
            raise UsageError(f"--price: {entry[:40]!r}: {why}")
        same = table["gpu_name_contains"].str.lower() == name.strip().lower()
        table = pd.concat([table[~same], good], ignore_index=True)
    return table


def add_arguments(p: argparse.ArgumentParser, default_db: str = "results.db") -> None:
    from sweep.analysis.planner import CAPACITIES_GB

    p.add_argument("--model", required=True, help="model name as stored (e.g. llama-3.1-8b)")
    p.add_argument("--seq-len", required=True, help="tokens per sequence of your data")
    p.add_argument("--tokens", required=True, help="tokens to train on: 50M, 1.5B, 2e9")
    p.add_argument(
        "--method",
        action="append",
        default=None,
        help=f"{', '.join(FINETUNES)} (repeatable or comma-separated; default: all)",
    )
    p.add_argument(
        "--db", default=default_db, help=f"results database (default {default_db}; may be absent)"
    )
    add_data_flags(p)
    p.add_argument(
        "--capacities",
        default=None,
        metavar="GB,GB,...",
        help=f"card sizes (default: {','.join(f'{c:g}' for c in CAPACITIES_GB)})",
    )
    p.add_argument(
        "--prices",
        default=None,
        metavar="FILE.csv",
        help="price table instead of the defaults: GPU name, $ per GPU-hour[, source] per row",
    )
    p.add_argument(
        "--price",
        action="append",
        default=None,
        metavar="GPU=USD",
        help="the hourly price of one GPU, e.g. H100=2.49 (repeatable; replaces that row)",
    )
    p.add_argument("--format", choices=("text", "csv"), default="text", help="output format")


def _cell(value: Any) -> str:
    import pandas as pd  # here: the command line loads without pandas until a table is printed

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int) or hasattr(value, "__index__"):
        return f"{int(value):,}"
    return str(value)


def format_plan(table, notes: list[str], model: str, seq_len: int, tokens: float) -> str:
    """The plan as text: a title, an aligned table, where the rows come from, the notes."""
    cols = list(SHORT_HEADERS)
    cells = [[_cell(row[c]) for c in cols] for _, row in table.iterrows()]
    widths = [max(len(SHORT_HEADERS[c]), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    numeric = {"Largest batch", "Longest sequence", "Tokens/s", "At batch", "Hours", "$"}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in numeric else v.ljust(w)
            for c, v, w in zip(cols, values, widths, strict=True)
        ).rstrip()

    out = [
        f"Fine-tuning {model} on {tokens:,.0f} tokens of {seq_len} tokens per sequence",
        "",
        line([SHORT_HEADERS[c] for c in cols]),
        line(["-" * w for w in widths]),
        *(line(r) for r in cells),
        "",
        "Tokens/s, hours and $ come only from trials on the card itself, one GPU per trial; a "
        "capped card (emulated) says what fits, never how fast.",
    ]
    data = sorted({d for v in table["Data"] if v for d in str(v).split(", ")})
    if data:
        out.append("Data sets: " + ", ".join(data) + ".")
    return "\n".join(out + notes)


def run(args: argparse.Namespace) -> int:
    from sweep.analysis.planner import plan
    from sweep.results.memory_model import parse_capacities

    try:
        try:
            seq_len = int(args.seq_len)
        except ValueError:
            why = f"{args.seq_len[:40]!r} is not a number of tokens"
            raise UsageError(f"--seq-len: {why}") from None
        if seq_len <= 0:
            raise UsageError(f"--seq-len: {seq_len} is not a positive number of tokens")
        tokens = parse_tokens(args.tokens)
        methods = parse_methods(args.method)
        try:
            capacities = parse_capacities(args.capacities) if args.capacities is not None else None
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
        prices = price_table(args.prices, args.price)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame, messages = load_rows(args)
    for msg in messages:
        print(f"note: {msg}", file=sys.stderr)
    kw = {"capacities": capacities} if capacities else {}
    result = plan(frame, args.model, seq_len, tokens, methods, prices=prices, **kw)
    if args.format == "csv":
        result.table.to_csv(sys.stdout, index=False)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        print(format_plan(result.table, result.notes, args.model, seq_len, tokens))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep fits", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))
