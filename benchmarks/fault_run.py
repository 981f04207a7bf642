"""A 30-trial fleet sweep put through what fleets do, on a fake Ray cluster; nothing may be lost
or run twice.

The cluster (ray.cluster_utils.Cluster): a CPU head, a node with one logical V100 GPU and a node
with two logical A100 GPUs (``accelerator_type:*`` resources, as Ray advertises real ones). The
sweep: 15 configurations on each type, each a fake trial of ``--trial-s`` seconds
(tests/fake_trials.py:sleep_by_batch, no torch). Every driver is ``python -m sweep run`` in its
own process, on one database, in this order:

1. driver A starts; once it has stored a row, driver B starts on the same sweep and database and
   must be refused (the lease), naming A;
2. at a random moment (after a random number of rows), the V100 node is removed: A100 trials go
   on, V100 trials become ``no_gpu_type`` rows after ``--node-wait-s``;
3. after a few more rows, driver A is SIGKILLed; the V100 node is added back;
4. driver C resumes (it takes over the dead driver's lease) and is sent SIGINT (Ctrl-C) after a
   few more rows: it must exit 130;
5. driver D resumes to the end.

Printed: trials planned, rows stored, rows lost (a key stored at some point and missing at the
end, or a planned key without an ok row at the end: must be 0), duplicates (ok measurements
replaced by another run of the same key, in ``superseded``: must be 0), every driver's exit
status, wall time, the machine.

    python benchmarks/fault_run.py               # seed 0: the moments are drawn from it
    python benchmarks/fault_run.py --seed 3 --trial-s 1.5

``--scenario`` runs issue 26's scenarios on the same cluster instead (disk-full, shared, paused,
sigterm, sighup: benchmarks/fault_scenarios.py says what each does).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SWEEP = """
name: faults
gpu_types: [V100, A100]
axes: {{seed: [{seeds}]}}
fixed: {{device: cuda, batch_size: {batch}}}
timeout_s: 120
"""


def _cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False},
    )
    v100 = _add_v100(cluster)
    cluster.add_node(num_cpus=2, num_gpus=2, resources={"accelerator_type:A100": 1})
    cluster.wait_for_nodes()
    return cluster, v100


def _add_v100(cluster):
    return cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:V100": 1})


class Drivers:
    """``python -m sweep run`` processes on one sweep file, database and cluster."""

    def __init__(self, sweep_file: str, db: str, address: str, node_wait_s: float, logs: str):
        self.db, self.logs = db, logs
        self.cmd = [
            sys.executable, "-m", "sweep", "run", sweep_file, "--db", db, "--address", address,
            "--trial-fn", "tests.fake_trials:sleep_by_batch", "--node-wait-s", str(node_wait_s),
            "--no-progress",
        ]  # fmt: skip

    def start(self, name: str) -> subprocess.Popen:
        log = open(os.path.join(self.logs, f"{name}.log"), "w")
        return subprocess.Popen(self.cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def last_line(self, name: str) -> str:
        with open(os.path.join(self.logs, f"{name}.log")) as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
        return lines[-1] if lines else ""


def _rows(db: str) -> dict[str, str]:
    """key -> status of what is stored now (a plain read: the benchmark does not trust the
    store's own code to count its rows)."""
    if not os.path.exists(db):
        return {}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return dict(conn.execute("SELECT key, status FROM trials").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:  # the tables are not there yet
        return {}


def _wait(cond, proc: subprocess.Popen | None, timeout_s: float, seen: set[str], db: str) -> bool:
    """Poll until ``cond(rows)`` holds (True) or ``proc`` ends or time runs out (False); every
    key seen stored is added to ``seen``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = _rows(db)
        seen.update(rows)
        if cond(rows):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="draws the moments of the faults")
    p.add_argument("--trial-s", type=float, default=2.0, help="seconds one fake trial sleeps")
    p.add_argument("--node-wait-s", type=float, default=5.0)
    p.add_argument("--keep", action="store_true", help="keep the database and the drivers' logs")
    p.add_argument(
        "--scenario", nargs="+", metavar="NAME",
        help="issue 26's scenarios instead (benchmarks/fault_scenarios.py): disk-full shared "
        "paused sigterm sighup",
    )  # fmt: skip
    p.add_argument("--trials", type=int, default=10, help="trials of each --scenario sweep")
    args = p.parse_args()
    rng = random.Random(args.seed)
    os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.scenario:
        return _scenarios(args)

    work = tempfile.mkdtemp(prefix="fault-run-")
    db, sweep_file = os.path.join(work, "faults.db"), os.path.join(work, "faults.yaml")
    with open(sweep_file, "w") as fh:
        fh.write(SWEEP.format(seeds=", ".join(map(str, range(15))), batch=round(args.trial_s * 10)))
    from sweep.plan import sweepfile
    from sweep.plan.grid import expand

    planned = {t.key for t in expand(sweepfile.load(sweep_file))}

    t0 = time.monotonic()
    cluster, v100 = _cluster()
    drivers = Drivers(sweep_file, db, cluster.address, args.node_wait_s, work)
    seen: set[str] = set()
    events: list[str] = []
    codes: dict[str, int | None] = {}

    def note(text: str) -> None:
        events.append(f"{time.monotonic() - t0:6.1f} s  {text} ({len(_rows(db))} rows)")
        print(events[-1], flush=True)

    try:
        lose_at = rng.randint(1, 6)
        kill_after = rng.randint(1, 3)
        note(
            f"cluster up; driver A starts (V100 node lost after {lose_at} rows; A killed "
            f"{kill_after} ok rows after its V100 trials gave up waiting)"
        )
        a = drivers.start("A")
        b = None
        b_took: list[float] = []  # seconds from B's start to its exit
        if _wait(lambda r: len(r) >= 1, a, 180, seen, db):
            b = drivers.start("B")  # runs beside A: its refusal does not hold A up
            note("driver B starts on the same sweep and database")
            b_started = time.monotonic()

            def time_b(proc=b) -> None:
                proc.wait()
                b_took.append(time.monotonic() - b_started)

            waiter = threading.Thread(target=time_b, daemon=True)
            waiter.start()
        if _wait(lambda r: len(r) >= lose_at, a, 180, seen, db):
            time.sleep(rng.uniform(0, args.trial_s))
            cluster.remove_node(v100)
            note("V100 node removed")
        if _wait(lambda r: "no_gpu_type" in r.values(), a, 180, seen, db):
            note("A stored its waiting V100 trials as no_gpu_type")
            ok_then = sum(s == "ok" for s in _rows(db).values())
            if _wait(lambda r: sum(s == "ok" for s in r.values()) >= ok_then + kill_after, a, 180,
                     seen, db):  # fmt: skip
                a.send_signal(signal.SIGKILL)
                note("driver A SIGKILLed")
        codes["A (SIGKILL)"] = a.wait(timeout=120)
        if b is not None:
            codes["B (second driver)"] = b.wait(timeout=120)
            took = f" {b_took[0]:.1f} s after it started" if b_took else ""
            note(f"driver B exited {codes['B (second driver)']}{took}: {drivers.last_line('B')}")
        v100 = _add_v100(cluster)
        cluster.wait_for_nodes()
        note("V100 node back")

        ok_before = sum(s == "ok" for s in _rows(db).values())
        interrupt_after = rng.randint(2, 5)
        c = drivers.start("C")
        note(f"driver C resumes (Ctrl-C after {interrupt_after} more ok rows)")
        if _wait(
            lambda r: sum(s == "ok" for s in r.values()) >= ok_before + interrupt_after,
            c, 240, seen, db,
        ):  # fmt: skip
            c.send_signal(signal.SIGINT)
            note("driver C sent SIGINT")
        try:
            codes["C (Ctrl-C)"] = c.wait(timeout=120)
        except subprocess.TimeoutExpired:
            c.send_signal(signal.SIGINT)  # a second Ctrl-C, as a user would
            codes["C (Ctrl-C)"] = c.wait(timeout=60)
        note(f"driver C exited {codes['C (Ctrl-C)']}: {drivers.last_line('C')[:160]}")

        d = drivers.start("D")
        codes["D (resume)"] = d.wait(timeout=600)
        note(f"driver D exited {codes['D (resume)']}")
    finally:
        cluster.shutdown()
    wall_s = time.monotonic() - t0

    final = _rows(db)
    conn = sqlite3.connect(db)
    superseded = [json.loads(r)["status"] for (r,) in conn.execute("SELECT record FROM superseded")]
    (n_keys,) = conn.execute("SELECT COUNT(DISTINCT key) FROM trials").fetchone()
    (n_rows,) = conn.execute("SELECT COUNT(*) FROM trials").fetchone()
    conn.close()
    lost = (seen - set(final)) | {k for k in planned if final.get(k) != "ok"}
    duplicates = sum(s == "ok" for s in superseded) + (n_rows - n_keys)

    from benchmarks._machine import machine

    statuses = {s: list(final.values()).count(s) for s in sorted(set(final.values()))}
    print()
    print(f"trials planned: {len(planned)}")
    print(f"rows stored: {len(final)} ({', '.join(f'{s} {n}' for s, n in statuses.items())})")
    print(f"rows lost: {len(lost)}")
    print(f"duplicates: {duplicates} (ok measurements run twice)")
    print(
        f"superseded: {len(superseded)} non-final rows replaced by a resume "
        f"({', '.join(sorted(set(superseded))) or 'none'})"
    )
    print("drivers: " + "; ".join(f"{k} exit {v}" for k, v in codes.items()))
    print(f"wall time: {wall_s:.1f} s (seed {args.seed}, trial {args.trial_s:g} s)")
    print(f"machine: {machine()}")
    if args.keep:
        print(f"kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    good = (
        not lost
        and not duplicates
        and codes.get("A (SIGKILL)") == -signal.SIGKILL
        and codes.get("B (second driver)") == 2
        and codes.get("C (Ctrl-C)") == 130
        and codes.get("D (resume)") == 0
    )
    return 0 if good else 1


def _scenarios(args) -> int:
    from benchmarks import fault_scenarios
    from benchmarks._machine import machine

    unknown = set(args.scenario) - set(fault_scenarios.NAMES)
    if unknown:
        print(f"unknown scenarios: {sorted(unknown)}; known: {', '.join(fault_scenarios.NAMES)}")
        return 2
    work = tempfile.mkdtemp(prefix="fault-scenarios-")
    cluster, _ = _cluster()
    try:
        results = fault_scenarios.run(args.scenario, cluster.address, work, args.trials,
                                      args.trial_s)  # fmt: skip
    finally:
        cluster.shutdown()
    print()
    for name, r in results.items():
        print(f"{name}: {json.dumps(r)}")
    print(f"machine: {machine()}")
    if args.keep:
        print(f"kept: {work}")
    bad = [
        n for n, r in results.items() if r.get("lost") or r.get("twice") or r.get("timeout_rows")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
