"""The text the command line prints about sweeps: the summary table of a run with the predicted
limits of the memory model (and ``--capacities``, and the limits table ``export`` writes), the
stored rows by sweep and status, and the plan of what a run would do. Pure over frames and the
store (pandas; no ray, no torch)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from contextlib import nullcontext
from typing import Any

from cluster.placement import place
from sweep.plan.config import MAIN_FIELDS, field_names
from sweep.plan.fixed_memory import search_outline
from sweep.plan.grid import MAX_BATCH, MAX_SEQ, SEARCH_MODES, SweepSpec, expand
from sweep.results.lease import planned_keys
from sweep.results.memory_model import CAPACITIES_GB, MARGIN, parse_capacities, predicted_limits
from sweep.results.record import FINAL_STATUSES
from sweep.results.store import Store
from sweep.results.trust import GPU_BUSY_MIN_PCT, host_bound

# A configuration's columns: the main fields and the batch size always, then every other field
# that varies among the rows (options, match fields, device, measurement settings), in field order:
# without it their rows would be merged as if repeats.
SUMMARY_CONFIG = [*MAIN_FIELDS, "batch_size"]
SUMMARY_COLUMNS = [
    *SUMMARY_CONFIG,
    "gpu",
    "status",
    "n",
    "sequences_per_s",
    "tokens_per_s",
    "peak_allocated_gib",
    "mfu",
    "mfu_analytic",  # from model FLOPs (4N frozen + 6N trainable + attention): what a
    # fine-tuning row's MFU is quoted as; the counter misses 4-bit and Triton kernels' work
    "gpu_busy_pct",
    "launch_bound_pct",
    "max_batch_size",
]


def summary_table(frame) -> Any:
    """Per configuration and GPU: median seq/s, tokens/s, peak memory (GiB), MFU and GPU busy
    (NVML utilization during the measured steps, %) over repeats, and the statuses seen. A GPU
    busy under sweep.trial.metrics.GPU_BUSY_MIN_PCT marks a host-bound figure."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    df = frame.copy()
    df["gpu"] = df["gpu"].fillna(df["gpu_type"]).fillna("any")
    varying = [
        f
        for f in field_names()
        if f not in SUMMARY_CONFIG and f in df.columns and df[f].nunique(dropna=False) > 1
    ]
    keys = [*SUMMARY_CONFIG, *varying, "gpu"]
    df["gpu_busy_pct"] = df["gpu_util_pct_mean"]  # a results frame has every metric's column
    metrics = SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("n") + 1 :]
    for m in metrics:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    agg = (
        df.groupby(keys, dropna=False, sort=True)
        .agg(
            status=("status", lambda s: ",".join(sorted(set(s)))),
            n=("status", "size"),
            **{m: (m, "median") for m in metrics},
        )
        .reset_index()
    )
    columns = [*SUMMARY_CONFIG, *varying, *SUMMARY_COLUMNS[len(SUMMARY_CONFIG) :]]
    return agg[columns]


def limits_table(frame, capacities_gb: tuple[float, ...] = CAPACITIES_GB) -> Any:
    """One row per group with two or more ok batches (sweep.results.memory_model): the workload
    fields that tell the groups apart, the GPU, one column per card size (``80GB``: the largest
    batch predicted to fit, MARGIN kept free), and the fit's largest error on the measured points
    (%), its points, the largest batch measured and the peak it fitted; ``max_batch``: where a
    max-batch search ran, the largest batch that fitted on the group's own GPU."""
    import pandas as pd

    lim = predicted_limits(frame, capacities_gb)
    if lim.empty:
        return pd.DataFrame()
    per_group = ["fit_max_error_pct", "fit_points", "measured_up_to_batch", "peak_source"]
    keys = [c for c in lim.columns if c not in ["capacity_gb", "predicted_max_batch", *per_group]]
    always = ("model", "seq_len", "gpu")
    shown = [k for k in keys if k in always or lim[k].nunique(dropna=False) > 1]
    found = pd.to_numeric(frame.get("max_batch_size", pd.Series(dtype=float)), errors="coerce")
    found = found.reindex(frame.index)
    answers = frame[found.notna()].assign(max_batch_size=found[found.notna()])
    answers = answers.assign(gpu=answers["gpu"].fillna(answers["gpu_type"]).fillna("cpu"))
    by_group = answers.groupby(keys, dropna=False, sort=False)["max_batch_size"].max()
    measured = {_plain(k): v for k, v in by_group.items()}
    rows = []
    for group, g in lim.groupby(keys, dropna=False, sort=True):
        first = g.iloc[0]
        row = {k: first[k] for k in shown}
        for cap, batch in zip(g["capacity_gb"], g["predicted_max_batch"], strict=True):
            row[f"{cap:g}GB"] = None if pd.isna(batch) else int(batch)
        row["fit_err_pct"] = round(float(first["fit_max_error_pct"]), 2)
        row["points"] = first["fit_points"]
        row["up_to"] = first["measured_up_to_batch"]
        row["peak"] = {"nvml_peak_used_gib": "nvml", "peak_reserved_gib": "reserved"}.get(
            first["peak_source"], first["peak_source"]
        )
        if measured:
            best = measured.get(_plain(group))
            row["max_batch"] = "-" if best is None else str(int(best))
        rows.append(row)
    return pd.DataFrame(rows)


def _plain(key: Any) -> tuple:
    """A group's key with NaN as None (NaN != NaN: a dict lookup would miss it)."""
    key = key if isinstance(key, tuple) else (key,)
    return tuple(None if isinstance(v, float) and v != v else v for v in key)


def format_limits(frame, capacities_gb: tuple[float, ...] = CAPACITIES_GB) -> str:
    """The limits table as text, with a line saying what it is; "" when no group has two ok
    batches (one batch gives no slope: no prediction rather than a guess)."""
    import pandas as pd

    table = limits_table(frame, capacities_gb)
    if table.empty:
        return ""
    batches = [c for c in table.columns if c.endswith("GB")]
    table[batches] = table[batches].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:d}")
    text = table.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="-")
    return (
        f"predicted largest batch per card (a line through each group's ok peaks, "
        f"{MARGIN * 100:g}% of the card kept free; fit_err_pct: its largest miss on them):\n" + text
    )


def format_summary(frame, capacities_gb: tuple[float, ...] = CAPACITIES_GB) -> str:
    """The summary table, its host-bound note, the scaling of N-GPU trials
    (sweep/analysis/scaling.py), the interference check (sweep/analysis/interference.py) and the
    predicted limits (format_limits)."""
    import pandas as pd

    from sweep.analysis.interference import format_interference, split
    from sweep.analysis.parity import format_parity
    from sweep.analysis.scaling import format_scaling

    check, frame = split(frame)  # the interference check's rows are its own table
    text = _format_table(frame)
    limits = format_limits(frame, capacities_gb) if not frame.empty else ""
    scaling = format_scaling(frame)  # only where there are N-GPU rows
    parts = (
        scaling,
        format_interference(pd.concat([check, frame])) if len(check) else "",
        format_graph_against_eager(frame),
        format_parity(frame),
        limits,
    )
    return text + "".join("\n\n" + part for part in parts if part)


def format_graph_against_eager(frame) -> str:
    """The CUDA-graph step against the eager one per configuration and batch (sweep.analysis.pairs.
    graph_against_eager), as text; "" without configurations run both ways."""
    import pandas as pd

    from sweep.analysis.pairs import graph_against_eager

    if frame.empty or "cuda_graph" not in frame:
        return ""
    table = graph_against_eager(frame)
    if table.empty:
        return ""
    for col in ("eager tokens/s", "graph tokens/s"):
        table[col] = table[col].map(lambda v: f"{v:,.0f}")
    table["graph/eager"] = table["graph/eager"].map(lambda v: f"{v:.2f}x")
    for col in ("eager busy %", "graph busy %"):
        table[col] = table[col].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
    return (
        "CUDA graph against eager, per batch (graph/eager: what the host's launches cost the "
        "eager step; busy: the measured step's share with a kernel running):\n"
        + table.to_string(index=False)
    )


def _format_table(frame) -> str:
    table = summary_table(frame)
    if table.empty:
        return "(no trials)"
    n = sum(host_bound(r.gpu_busy_pct, r.launch_bound_pct) is True for r in table.itertuples())
    for column in ("max_batch_size", "gpu_busy_pct", "launch_bound_pct"):
        if table[column].isna().all():
            table = table.drop(columns=[column])
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    if n:
        text += (
            f"\n{n} configuration(s) kept the GPU busy under {GPU_BUSY_MIN_PCT:g}% of the measured"
            " steps (or, where profiled, had no kernel running for more than"
            f" {100 - GPU_BUSY_MIN_PCT:g}% of a step): host-bound, their figures depend on the CPU"
            " and vary from run to run"
            " (a larger batch or longer steps measure the GPU)."
        )
    return text


def stored_summary(db: str) -> str:
    """Stored rows by sweep and status (for ``python -m sweep status``)."""
    with Store(db, readonly=True) as store:
        trials = store.trials()
        plans = store.plans()
        keys = planned_keys(store)
        statuses = store.statuses()
        notes = [n for n in (store.location_note(), store.unreadable_note()) if n]
    if not trials and not plans:
        return "\n".join([f"{db}: no trials stored", *notes])
    by_sweep: dict[str, Counter] = {name: Counter() for name in plans}
    for t in trials:
        if t.sweep not in keys:  # a sweep that kept its planned keys is counted from them
            by_sweep.setdefault(t.sweep or "-", Counter())[t.status] += 1
    for name, planned in keys.items():  # its rows, whichever sweep wrote them
        by_sweep[name] = Counter(statuses[k] for k in planned if k in statuses)
    lines = [f"{db}: {len(trials)} trials"]
    for name, counts in sorted(by_sweep.items()):
        parts = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        line = f"  {name}: {sum(counts.values())}" + (f" ({parts})" if parts else "")
        plan = plans.get(name)
        if plan and plan["planned"] is not None:
            line += f" of {plan['planned']} planned"
        if plan and plan["running"]:  # the count the engine keeps while the sweep runs
            line += f", {plan['running']} running (as of {plan['updated_at']} UTC)"
        lines.append(line)
    return "\n".join(lines + notes)


def plan_lines(
    spec: SweepSpec, db: str | None, cluster_types: dict[str, int] | None, has_gpu: bool | None
) -> list[str]:
    """What ``run`` would do: the trials, how many are stored, which GPU types are present."""
    planned = expand(spec)
    stored: dict[str, str] = {}
    read_only = ""
    if db and os.path.exists(db):
        with Store(db, readonly=True) as store:
            stored = store.statuses()
            read_only = store.location_note()
    final = sum(1 for t in planned if stored.get(t.key) in FINAL_STATUSES)
    unit = "search groups" if spec.mode in SEARCH_MODES else "trials"
    search = ""
    if spec.mode == MAX_BATCH:
        exact = f"within {spec.batch_tolerance * 100:g}%" if spec.batch_tolerance else "exact"
        search = f" (mode {spec.mode}, batch up to {spec.batch_limit}, {exact})"
    if spec.mode == MAX_SEQ:
        limit = spec.seq_limit or "each model's maximum positions"
        search = f" (mode {spec.mode}, sequence up to {limit}, exact to 128 tokens)"
    lines = [
        f"sweep {spec.name}: {len(planned)} {unit}, {final} already stored with a final "
        f"status, {len(planned) - final} to run{search}"
    ]
    if spec.mode in SEARCH_MODES and (outline := search_outline([t.config for t in planned])):
        lines.append(f"searches: {outline}")
    if spec.interference:
        lines.append(
            "interference check: 2 more trials of "
            + ", ".join(f"{k} {v}" for k, v in spec.interference.items())
            + " (alone on the node first, then among the others)"
        )
    if cluster_types is not None:
        have = ", ".join(f"{t} ({n} GPU)" for t, n in sorted(cluster_types.items())) or "none"
        lines.append(f"cluster GPU types: {have}; GPUs: {'yes' if has_gpu else 'no'}")
        p = place(spec, planned, cluster_types, bool(has_gpu))
        if p.unplaceable:
            lines.append(
                f"{len(p.unplaceable)} would be stored as no_gpu_type: "
                + "; ".join(sorted({r.error for r in p.unplaceable}))
            )
    header = ["#", "key", "stored", "gpu_type", "model", "batch", "seq", "precision", "device"]
    gpus = any(t.config.gpus_per_trial > 1 for t in planned)  # N-GPU trials: say their N
    # and every other field that differs between the trials (finetune, capacity_gb...): two
    # rows never read the same
    shown = {"model", "batch_size", "seq_len", "precision", "device", "gpus_per_trial"}
    dicts = [t.config.to_dict() for t in planned]
    varying = [f for f in dicts[0] if f not in shown and len({str(d[f]) for d in dicts}) > 1]
    header += (["gpus"] if gpus else []) + varying
    rows = [header]
    for i, (t, d) in enumerate(zip(planned, dicts, strict=True)):
        c = t.config
        rows.append(
            [str(i), t.key, stored.get(t.key, "-"), t.gpu_type or "any", c.model]
            + [str(c.batch_size), str(c.seq_len), c.precision, c.device]
            + ([str(c.gpus_per_trial)] if gpus else [])
            + [str(d[f]) for f in varying]
        )
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if read_only:
        lines.append(read_only)
    return lines


# -- the memory model on the command line --------------------------------------------------------
def add_capacities_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--capacities",
        default=None,
        metavar="GB,GB,...",
        help="card sizes for the predicted largest batch per group "
        f"(default: {','.join(f'{c:g}' for c in CAPACITIES_GB)})",
    )


def capacities_of(args: argparse.Namespace) -> tuple[float, ...]:
    """The card sizes asked for; one ValueError naming --capacities and the bad entry."""
    value = getattr(args, "capacities", None)
    if value is None:
        return CAPACITIES_GB
    try:
        return parse_capacities(value)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None


def limits_path(trials_path: str) -> str:
    """Where ``export -o FILE`` puts the limits: FILE's stem + ``.limits`` + its suffix."""
    stem, suffix = os.path.splitext(trials_path)
    return f"{stem}.limits{suffix}"


def write_limits(frame, capacities: tuple[float, ...], fmt: str, out: str | None) -> int:
    """The predicted largest batch per group and card size (predicted_limits: one row each) as
    CSV, JSON lines or parquet, to ``out`` or stdout; returns the number of rows. Groups with
    fewer than two ok batches have none."""
    limits = predicted_limits(frame, capacities)
    if fmt == "csv":
        limits.to_csv(out if out else sys.stdout, index=False)
    elif fmt == "jsonl":
        text = limits.to_json(orient="records", lines=True) if len(limits) else ""
        with open(out, "w", encoding="utf-8") if out else nullcontext(sys.stdout) as fh:
            fh.write(text if not text or text.endswith("\n") else text + "\n")
    else:
        limits.to_parquet(out, index=False)
    if out:
        groups = len(limits) // max(len(capacities), 1)
        print(
            f"wrote {len(limits)} predicted limits ({groups} groups x {len(capacities)} card "
            f"sizes) to {os.path.abspath(out)}",
            file=sys.stderr,
        )
    return len(limits)


# -- how a sweep run ends: its last line and its exit status -------------------------------
#
# The exit statuses of ``python -m sweep`` (also in README, "Use"):
#
# - 0: every planned trial ran and is stored;
# - 1: an unexpected error;
# - 2: bad input (a sweep file, a flag, a database that cannot be used): nothing ran;
# - 3: the results could not be stored (a full disk): the sweep stopped at once; what it measured
#   after that is in the spill file the message names (``python -m sweep import FILE``);
# - 4: some trials did not run, their GPU type is not in the cluster (``no_gpu_type`` rows);
# - 129, 130, 143: stopped by SIGHUP, Ctrl-C (SIGINT) or SIGTERM; the rows stored are kept, and
#   the same command resumes.

EXIT_STORE_FAILED = 3
EXIT_NO_GPU_TYPE = 4


def stopped(exc: Exception) -> int:
    """A sweep stopped mid-way by its store or its lease: one line, its exit status."""
    from sweep.engine.guard import StoreFailed

    print(f"error: {exc}", file=sys.stderr)
    return EXIT_STORE_FAILED if isinstance(exc, StoreFailed) else 2


def interrupted(db: str, stored: int | None = None) -> int:
    """Ctrl-C, SIGTERM or SIGHUP: one line, 128 + the signal."""
    from sweep.engine import stopsignals

    if stored is None:
        print(
            f"\ninterrupted: every trial that ended is stored in {db}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
    else:
        print(
            f"interrupted: {stored} rows are stored in {db}; trials it stopped are not final: "
            "run the same command again to resume",
            file=sys.stderr,
        )
    return stopsignals.exit_code()


def finished(outcome, db: str) -> int:
    """The last line of a sweep that ran to its end, and its exit status."""
    from sweep.results.record import NO_GPU_TYPE

    missing = outcome.counts.get(NO_GPU_TYPE, 0)
    if missing:
        print(
            f"not run: {missing} trials need a GPU type this cluster does not have "
            f"({NO_GPU_TYPE} rows in {db}); run the same command again on a cluster that has it",
            file=sys.stderr,
        )
        return EXIT_NO_GPU_TYPE
    return 0


def add_import_arguments(p: argparse.ArgumentParser, default_db: str) -> None:
    """``python -m sweep import FILE --db DB``: load records kept in a JSONL file into a database.

    A sweep that could not store its results (a full disk) writes what it measured after that to a
    spill file, one Trial record per line (the form ``export --format jsonl`` writes); this puts
    them in a database, with the store's rule for a key already stored (an ok row is only replaced
    by another ok row).
    """
    p.add_argument("file", help="a JSONL file of Trial records (a spill file, an export)")
    p.add_argument("--db", default=default_db)


def import_records(args: argparse.Namespace) -> int:
    from sweep.results.frame import read_jsonl
    from sweep.results.store import Store, StoreError

    try:
        trials, problems = read_jsonl(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {args.file!r} cannot be read ({exc})", file=sys.stderr)
        return 2
    try:
        with Store(args.db) as store:
            written = sum(store.put(t) for t in trials)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    kept = len(trials) - written
    print(
        f"imported {written} of {len(trials)} records from {args.file} into {args.db}"
        + (f" ({kept} kept the row already stored)" if kept else ""),
        file=sys.stderr,
    )
    return 0 if not problems else 1
