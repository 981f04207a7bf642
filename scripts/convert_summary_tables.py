"""Rebuild the trial rows of an H200 run whose databases were lost, from its summary tables.

The second H200 run of 2026-11-29 (``benchmarks/results/2026-11-29-h200-run2``) measured every
sweep through ``python -m sweep run``, but its databases never came back: ``gpu_collect.sh``
left every snapshot out of the archive (fixed in the commit that added
``tests/test_gpu_collect.py``). What came back is each sweep's printed summary table (one row per
configuration: median sequences/s, tokens/s, peak allocated GiB and MFU, four significant
digits), the run's log and the machine line of its benchmarks.

    .venv/bin/python scripts/convert_summary_tables.py [--run DIR] [--out FILE]

Each table row becomes one ``Trial`` (source "measured", status as printed) whose configuration
is the one the sweep file planned for that row: the sweep is expanded with the engine's own grid
expansion and each printed row is matched to exactly one planned configuration (an unmatched or
ambiguous row is an error, never a guess). Metrics are the four printed columns only; nothing is
derived or filled in. The environment is the run's (GPU, driver, versions, commit, from the
benchmarks' machine line and the campaign log), the same for every row; no per-trial field (GPU
UUID, node, times) is invented. Keys are the planned keys prefixed with ``run2-`` so that these
rows never replace a full record of the same configuration. Each row's provenance says all this.

Tables whose rows aggregate repeats (n > 1) are refused: a median of five is not a trial.
Output (default): ``DIR/records.jsonl``, one ``Trial.to_json()`` per line, for
``scripts/make_results.py`` to read beside the databases of other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402

from sweep.plan import grid, sweepfile  # noqa: E402
from sweep.results.record import MEASURED, STATUSES, Trial  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUN = os.path.join(ROOT, "benchmarks", "results", "2026-11-29-h200-run2")

# summary table file -> the sweep it printed (a preset name or a sweep file of the repository)
TABLES = {
    "seed.out": "seed",
    "seed_fp16.out": "seed-fp16",
    "families.out": "benchmarks/sweeps/h200-families.yaml",
    "llama.out": "benchmarks/sweeps/h200-llama.yaml",
    "harness_sweep.out": "benchmarks/sweeps/h200-harness.yaml",
}
METRICS = ("sequences_per_s", "tokens_per_s", "peak_allocated_gib", "mfu")
KEY_PREFIX = "run2-"
DATE = "2026-11-29"


class ConvertError(ValueError):
    pass


def read_table(path: str) -> pd.DataFrame:
    """A summary table as ``python -m sweep run`` prints it (pandas' fixed-width text)."""
    with open(path, encoding="utf-8") as fh:
        # the table ends at the first blank line (the predicted limits may follow it)
        text = fh.read().lstrip("\n").split("\n\n", 1)[0]
        lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ConvertError(f"{path}: empty summary table")
    header = lines[0].split()
    # the gpu column holds names with spaces ("NVIDIA H200"): split on the header's columns'
    # right edges (pandas right-aligns every column), never on single spaces
    edges = [m.end() for m in re.finditer(r"\S+", lines[0])]
    rows = []
    for ln in lines[1:]:
        cells, start = [], 0
        for end in edges:
            cells.append(ln[start:end].strip())
            start = end
        if ln[start:].strip():
            raise ConvertError(f"{path}: a row is wider than its header: {ln!r}")
        rows.append(cells)
    return pd.DataFrame(rows, columns=header)


def _value(field: str, text: str) -> Any:
    if field in ("seq_len", "batch_size", "n"):
        return int(text)
    if field == "compile":
        if text not in ("True", "False"):
            raise ConvertError(f"compile: expected True or False, got {text!r}")
        return text == "True"
    return text


def run_env(run_dir: str) -> dict[str, Any]:
    """The run's environment, from the machine line its benchmarks printed and the campaign log."""
    with open(os.path.join(run_dir, "mfu.json"), encoding="utf-8") as fh:
        machine = json.load(fh)["machine"]
    pat = (
        r"GPU (?P<gpu>.+?) \((?P<mem>[\d.]+) GiB, driver (?P<driver>\S+), CUDA (?P<cuda>\S+), "
        r"power limit (?P<power>[\d.]+) W\); host \S+; python (?P<py>\S+); torch (?P<torch>\S+); "
        r"transformers (?P<tf>\S+); lightning (?P<pl>\S+); ray (?P<ray>\S+); commit (?P<commit>\S+)"
    )
    m = re.search(pat, machine)
    if not m:
        raise ConvertError(f"mfu.json: machine line not understood: {machine!r}")
    return {
        "device": "cuda",
        "gpu_name": m["gpu"],
        "driver_version": m["driver"],
        "cuda_version": m["cuda"],
        "power_limit_w": float(m["power"]),
        "python_version": m["py"],
        "torch_version": m["torch"],
        "transformers_version": m["tf"],
        "lightning_version": m["pl"],
        "ray_version": m["ray"],
        "git_commit": m["commit"],
    }


def provenance(env: dict[str, Any], sweep: str) -> str:
    return (
        f"Measured by transformers-sweep on {env['gpu_name']} (driver {env['driver_version']}, "
        f"CUDA {env['cuda_version']}, torch {env['torch_version']}, transformers "
        f"{env['transformers_version']}, Lightning {env['lightning_version']}), {DATE}, git "
        f"commit {env['git_commit']}; sweep {sweep} through python -m sweep run (second H200 "
        "run). Rebuilt from the sweep's printed summary table because the run's database was "
        "lost in packing: only sequences/s, tokens/s, peak allocated GiB and MFU survive, to four "
        "significant digits; no time split, telemetry or per-trial environment. Method as every "
        "measured row: training steps (forward, backward and optimizer step) timed with CUDA "
        "events, warm-up excluded, figures from the median step."
    )


def convert_table(path: str, sweep_source: str, env: dict[str, Any]) -> list[Trial]:
    spec = sweepfile.load(
        os.path.join(ROOT, sweep_source) if sweep_source.endswith(".yaml") else sweep_source
    )
    planned = grid.expand(spec)
    table = read_table(path)
    missing = {"status", "n", *METRICS} - set(table.columns)
    if missing:
        raise ConvertError(f"{path}: no column(s) {', '.join(sorted(missing))}")
    match_fields = [c for c in table.columns if c not in ("gpu", "status", "n", *METRICS)]
    out = []
    for i, row in table.iterrows():
        where = f"{os.path.basename(path)} row {i + 1}"
        if _value("n", row["n"]) != 1:
            raise ConvertError(f"{where}: aggregates {row['n']} repeats, not one trial")
        if row["status"] not in STATUSES:
            raise ConvertError(f"{where}: status {row['status']!r} is not a trial status")
        want = {f: _value(f, row[f]) for f in match_fields}
        hits = [p for p in planned if all(getattr(p.config, f) == v for f, v in want.items())]
        if len(hits) != 1:
            raise ConvertError(
                f"{where}: {len(hits)} planned configurations of {spec.name} match {want}"
            )
        p = hits[0]
        metrics = {m: float(row[m]) for m in METRICS if row[m] not in ("", "NaN", "nan")}
        out.append(
            Trial(
                config=p.config.to_dict(),
                status=row["status"],
                metrics=metrics,
                env=dict(env),
                gpu_type=p.gpu_type,
                repeat=p.repeat,
                sweep=spec.name,
                source=MEASURED,
                provenance=provenance(env, spec.name),
                key=KEY_PREFIX + p.key,
            )
        )
    if len({t.key for t in out}) != len(out):
        raise ConvertError(f"{path}: two rows match the same planned configuration")
    return out


def convert(run_dir: str) -> list[Trial]:
    env = run_env(run_dir)
    trials = []
    for name, sweep_source in TABLES.items():
        trials += convert_table(os.path.join(run_dir, name), sweep_source, env)
    return trials


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default=DEFAULT_RUN, help="the run's results folder (%(default)s)")
    p.add_argument("--out", help="JSONL to write (default: RUN/records.jsonl)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run, "records.jsonl")
    try:
        trials = convert(args.run)
    except (ConvertError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(t.to_json() + "\n")
    print(f"wrote {len(trials)} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
