"""Turn GPU results databases into shipped reference rows, plots and tables.

    .venv/bin/python scripts/make_results.py results-h200.db [more.db ...] \\
        [--out ui/data/reference_h200.jsonl] [--docs docs/results] \\
        [--seed-ref ui/data/reference_seed_v100_a100.jsonl]

Reads every trial of the given databases (read-only) and keeps the rows measured by this project
(``source == "measured"``). Writes:
- ``--out``: each of them as a reference record (``source="reference"``, a provenance sentence
  naming the GPU, driver, versions, date, commit and method), one ``Trial.to_json()`` per line,
  sorted by GPU, sweep, configuration, batch and repeat. Config, status, metrics, environment and
  key are copied as read: a metric is never computed, rounded or filled in here (reading
  upgrades an older record as ``Trial.from_dict`` does: a version-2 row's launch_bound_pct is
  recomputed against its median step, sweep/results/record.py).
- ``--docs``: PNG figures and ``tables.md`` (Markdown): (a) the seed grid beside the 2020
  V100/A100 rows with speedups, (b) peak memory and the largest batch that fits, (c) the
  forward/backward/optimizer split, (d) MFU and TFLOP/s, (e) compile and attention ratios,
  (f) Lightning/native harness ratio, (g) repeat statistics, (h) status counts.

Rows of a max-batch search (a sweep in which some row carries ``max_batch_size``) are probes of
a few steps each: they are shipped and counted, and feed the largest-batch table, but no other
table. Tables of the results (not of the reference file) fill a row's missing GPU name (engine
rows for failures carry no environment) with the GPU the rest of its database ran on.

Exit status: 0 done; 1 no measured rows (nothing written); 2 a database is missing or unreadable.

This file is the command line only: reading and the reference records are
``sweep/analysis/report_rows.py``, the tables ``sweep/analysis/report_tables.py``, the report
``sweep/analysis/report.py`` (shared with the web app's figures in ``sweep/analysis/figures.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.analysis.report import report  # noqa: E402
from sweep.analysis.report_rows import (  # noqa: E402
    REPO_ROOT,
    Failure,
    load,
    measured,
    reference_frame,
    reference_records,
    results_frame,
    shown_path,
    write_reference,
)
from sweep.analysis.sources import DATA_DIR  # noqa: E402

DEFAULT_OUT = os.path.join(DATA_DIR, "reference_h200.jsonl")
DEFAULT_DOCS = os.path.join(REPO_ROOT, "docs", "results")
DEFAULT_SEED_REF = os.path.join(DATA_DIR, "reference_seed_v100_a100.jsonl")


def run(
    dbs: Sequence[str], out: str, docs: str, seed_ref: str, print_fn: Callable = print
) -> list[str]:
    """Read ``dbs``, write the reference records to ``out`` and the report into ``docs``; returns
    the paths written. Raises Failure (with its exit status) before writing anything when there
    is nothing to write or an input cannot be read."""
    rows = load(dbs)
    kept, notes = measured(rows)
    if not kept:
        raise Failure(
            f"error: no measured rows in {', '.join(map(repr, dbs))} "
            f"({len(rows)} rows in all, none with source 'measured'); nothing written",
            1,
        )
    ref = reference_frame(seed_ref)
    refs = reference_records(kept)
    meas = results_frame(kept)
    write_reference(refs, out)
    for n in notes:
        print_fn(f"note: {n}")
    print_fn(f"wrote {len(refs)} reference records to {out}")
    files = report(meas, ref, docs, [shown_path(p) for p in dbs])
    print_fn(f"wrote {', '.join(files)} to {docs}")
    return [out] + [os.path.join(docs, f) for f in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "databases", nargs="+", help="results databases (SQLite) or .jsonl record files to read"
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="reference JSONL to write (%(default)s)")
    p.add_argument("--docs", default=DEFAULT_DOCS, help="folder for tables.md and PNGs")
    p.add_argument("--seed-ref", default=DEFAULT_SEED_REF, help="the 2020 V100/A100 rows")
    args = p.parse_args(argv)
    try:
        run(args.databases, args.out, args.docs, args.seed_ref)
    except Failure as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
