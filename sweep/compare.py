"""``python -m sweep compare``: the web app's answer table on the command line.

One row per GPU for a model, a sequence length and a precision (none chosen: one row per GPU and
precision): the tokens/s of its configuration closest to the baseline's and at which batch, speedup
over a baseline GPU, the GPU's own best tokens/s and its configuration, largest batch run, first
out-of-memory batch, the predicted largest batch per card size, $ per million tokens, GPU busy,
step-time spread, a trust badge and what else differs. The table is
``sweep.analysis.answer.answer`` (the app shows the same); this module parses the arguments, loads
the rows and prints.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from sweep.plan.config import MAIN_FIELDS, field_help, field_label, filter_fields, option_fields
from sweep.plan.flags import field_argument, help_text

# header in the printed table, column of sweep.analysis.answer.COLUMNS (the speedup's is found
# by name)
SHORT_HEADERS = {
    "GPU": "GPU",
    "Precision": "precision",
    "Trust": "trust",
    "Tokens/s (like baseline)": "tokens/s (like baseline)",
    "At batch": "at batch",
    "Speedup": "speedup",
    "Speedup at equal batch": "same-batch",
    "GPU's best tokens/s": "GPU's best tokens/s",
    "Largest batch run": "max run",
    "First OOM batch": "1st OOM",
    "$ per million tokens": "$/M tokens",
    "GPU busy %": "busy %",
    "Step time CV %": "CV %",
}


def add_arguments(p: argparse.ArgumentParser, default_db: str = "results.db") -> None:
    p.add_argument("--model", required=True, help="model name as stored (e.g. roberta-base)")
    p.add_argument("--seq-len", required=True, type=int, help="tokens per sequence")
    p.add_argument(
        "--precision",
        default=None,
        help="e.g. bf16-mixed (default: every precision measured, one row per GPU and precision)",
    )
    p.add_argument(
        "--baseline", default=None, help="GPU the speedups divide by, e.g. A100 (default: slowest)"
    )
    p.add_argument(
        "--db", default=default_db, help=f"results database (default {default_db}; may be absent)"
    )
    add_data_flags(p)
    options = ", ".join(field_label(f) for f in option_fields())
    p.add_argument(
        "--strict",
        action="store_true",
        help=f"compare only configurations equal to the baseline's in every option ({options})",
    )
    p.add_argument("--format", choices=("text", "csv"), default="text", help="output format")
    for name in flag_fields():
        p.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help=help_text(
                f"only rows of this {field_label(name)} (default: any; {field_help(name)})"
            ),
            **field_argument(name),
        )


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """The flags that choose the rows besides --db: more results files, no reference rows."""
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FILE",
        help="a results file (JSONL, as `export --format jsonl` writes), shown as a data set of "
        "its own; repeatable (a file that does not read is named and left out)",
    )
    p.add_argument(
        "--no-reference", action="store_true", help="leave out the shipped reference rows"
    )


def load_rows(args: argparse.Namespace):
    """The rows --db, --data and the reference rows give, and every message about them."""
    from sweep.analysis.sources import Data

    data = Data.load(args.db, data_files=args.data, references=not args.no_reference)
    return data.frame(), data.messages


def flag_fields() -> list[str]:
    """The fields ``compare`` narrows the rows by with a flag of their own: every filter field
    but the main ones (model, sequence length, precision: flags of their own above)."""
    return [f for f in filter_fields() if f not in MAIN_FIELDS]


def filters_of(args: argparse.Namespace) -> dict[str, Any]:
    """The filters the flags of ``flag_fields`` chose (those given)."""
    return {f: getattr(args, f) for f in flag_fields() if getattr(args, f) is not None}


def _cell(value: Any, column: str) -> str:
    if _missing(value):
        return "-"
    if column.startswith("Speedup"):
        return f"{float(value):.2f}x"
    if column == "$ per million tokens":
        return f"${float(value):.4f}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) or hasattr(value, "__index__"):
        return f"{int(value):,}"
    return str(value)


# text columns, left-aligned; the others are figures
TEXT_COLUMNS = ("GPU", "Precision", "Trust")
COLUMN_NOTES = [
    "tokens/s (like baseline): the rate of the GPU's configuration closest to the baseline's "
    "(what the speedups divide); GPU's best tokens/s: the GPU's fastest, whatever its options "
    "(how they differ from the row's: GPU's best config, above).",
    "fits N GB: the memory model's predicted largest batch on a card of N GB.",
]


def format_answer(table, notes: list[str], baseline: str | None) -> str:
    """The answer as text: an aligned table of the figures (a precision column where the table
    has one), then per GPU where its rows come from, its best configuration and what differs
    from the baseline, then what the columns mean and the notes."""
    from sweep.analysis.answer import ANSWER_CAPACITIES_GB, fits_column, speedup_column

    if table.empty:
        return "\n".join(notes or ["no rows"])
    spd = speedup_column(table)
    cols = [
        "GPU",
        *(["Precision"] if "Precision" in table else []),
        "Trust",
        "Tokens/s (like baseline)",
        "At batch",
        spd,
        "Speedup at equal batch",
        "GPU's best tokens/s",
        "Largest batch run",
        "First OOM batch",
        *(fits_column(c) for c in ANSWER_CAPACITIES_GB),
        "$ per million tokens",
        "GPU busy %",
        "Step time CV %",
    ]
    heads = [
        f"vs {baseline}"
        if c == spd
        else f"fits {c.split()[1]}GB"
        if c.startswith("Fits ")
        else SHORT_HEADERS[c]
        for c in cols
    ]
    cells = [[_cell(row[c], c) for c in cols] for _, row in table.iterrows()]
    same = cols.index("Speedup at equal batch")
    for r, (_, row) in zip(cells, table.iterrows(), strict=True):
        if not _missing(row["Equal batch"]):
            r[same] += f" (b{int(row['Equal batch'])})"
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(heads)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if c in TEXT_COLUMNS else v.rjust(w)
            for c, v, w in zip(cols, values, widths, strict=True)
        ).rstrip()

    out = [line(heads), line(["-" * w for w in widths]), *(line(r) for r in cells), ""]
    for _, row in table.iterrows():
        which = f"{row['GPU']} {row['Precision']}" if "Precision" in table else row["GPU"]
        best = "; GPU's best config: " + str(row["GPU's best config"])
        differs = f"; differs from {baseline} in: {row['Differs in']}" if row["Differs in"] else ""
        out.append(f"{which}: {row['Data']}{best}{differs}")
    out += COLUMN_NOTES
    out += notes
    return "\n".join(out)


def _missing(v: Any) -> bool:
    import pandas as pd  # here: the command line loads without pandas until a table is printed

    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def run(args: argparse.Namespace) -> int:
    from sweep.analysis.answer import answer

    frame, messages = load_rows(args)
    if frame.empty:
        why = "; ".join(messages) or f"no rows in {args.db!r}"
        print(f"error: nothing to compare: {why}", file=sys.stderr)
        return 1
    for msg in messages:
        print(f"note: {msg}", file=sys.stderr)
    result = answer(
        frame,
        args.model,
        args.seq_len,
        args.precision,
        args.baseline,
        args.strict,
        filters=filters_of(args),
    )
    if result.table.empty:
        print(f"error: {' '.join(result.notes)}", file=sys.stderr)
        return 1
    if args.format == "csv":
        result.table.to_csv(sys.stdout, index=False)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        print(format_answer(result.table, result.notes, result.baseline))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep compare", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))
