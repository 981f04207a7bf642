"""Issue 26's fault scenarios on the fault run's fake cluster (benchmarks/fault_run.py), each a
sweep of ``--trials`` fake A100 trials on its own database, every driver ``python -m sweep run``
in its own process:

- disk-full: the database on a 240 KB tmpfs (needs root to mount it); the driver must stop in one
  line naming the spill file (exit 3); the tmpfs is then grown, the spill file imported and the
  sweep resumed;
- shared: a second sweep name over the same configurations starts while the first runs: refused
  in one line (exit 2); run again once the first ended, it runs nothing twice;
- paused: the driver is SIGSTOPped for longer than the lease's stale time (STALE_S); a second
  driver started then is refused; after SIGCONT the first ends with no false timeout rows;
- sigterm, sighup: the driver gets the signal after two ok rows (exit 143, 129); a resume ends it.

Each ends with every planned configuration stored exactly once (0 lost, 0 run twice, counted by
this process from the database, as fault_run.py counts), or with the one-line refusal.

    python benchmarks/fault_run.py --scenario disk-full shared paused sigterm sighup
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from benchmarks.fault_run import Drivers, _rows, _wait

NAMES = ("disk-full", "shared", "paused", "sigterm", "sighup")
SWEEP = """
name: {name}
gpu_types: [A100]
axes: {{seed: [{seeds}]}}
fixed: {{device: cuda, batch_size: {batch}}}
timeout_s: 60
"""


def _tally(db: str, planned: set[str], seen: set[str]) -> dict:
    """lost: a key seen stored and missing now, or a planned key without an ok row; twice: ok
    measurements replaced by another run of the same key, or a key stored twice."""
    final = _rows(db)
    conn = sqlite3.connect(db)
    try:
        superseded = [
            json.loads(r)["status"] for (r,) in conn.execute("SELECT record FROM superseded")
        ]
        (n_keys,) = conn.execute("SELECT COUNT(DISTINCT key) FROM trials").fetchone()
        (n_rows,) = conn.execute("SELECT COUNT(*) FROM trials").fetchone()
        timeouts = sum(s == "timeout" for s in final.values())
    finally:
        conn.close()
    lost = (seen - set(final)) | {k for k in planned if final.get(k) != "ok"}
    twice = sum(s == "ok" for s in superseded) + (n_rows - n_keys)
    return {"planned": len(planned), "ok": sum(s == "ok" for s in final.values()),
            "lost": len(lost), "twice": twice, "timeout_rows": timeouts}  # fmt: skip


class Scenario:
    """One scenario's sweep file(s), database and drivers on the shared cluster."""

    def __init__(self, name: str, work: str, address: str, trials: int, trial_s: float):
        self.name, self.dir = name, os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "r.db")
        self.address, self.trials, self.trial_s = address, trials, trial_s
        self.seen: set[str] = set()
        self.t0 = time.monotonic()
        self.events: list[str] = []

    def drivers(self, sweep_name: str) -> tuple[Drivers, set[str]]:
        from sweep.plan import sweepfile
        from sweep.plan.grid import expand

        path = os.path.join(self.dir, f"{sweep_name}.yaml")
        seeds = ", ".join(map(str, range(self.trials)))
        with open(path, "w") as fh:
            fh.write(SWEEP.format(name=sweep_name, seeds=seeds, batch=round(self.trial_s * 10)))
        planned = {t.key for t in expand(sweepfile.load(path))}
        return Drivers(path, self.db, self.address, 5.0, self.dir), planned

    def wait_ok(self, n: int, proc, timeout_s: float = 240) -> bool:
        return _wait(lambda r: sum(s == "ok" for s in r.values()) >= n, proc, timeout_s,
                     self.seen, self.db)  # fmt: skip

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:6.1f} s  {text}")
        print(f"[{self.name}] {self.events[-1]}", flush=True)


def disk_full(sc: Scenario) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a 240 KB tmpfs"}
    mnt = os.path.join(sc.dir, "small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=240k", "tmpfs", mnt], check=True)
    try:
        sc.db = os.path.join(mnt, "r.db")
        drivers, planned = sc.drivers("full")
        a = drivers.start("A")
        code_a = a.wait(timeout=600)
        last = drivers.last_line("A")
        sc.note(f"driver A exited {code_a}: {last}")
        stored_then = len(_rows(sc.db))
        subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)  # space freed
        spill = last.split(" are in ")[1].split(" (load them")[0] if " are in " in last else None
        imported = None
        if spill:
            imported = subprocess.run(
                [*drivers.cmd[:3], "import", spill, "--db", sc.db],
                capture_output=True, text=True,
            ).stderr.strip().splitlines()[-1]  # fmt: skip
            sc.note(f"import: {imported}")
            os.remove(spill)  # in the temporary directory: the tmpfs had no room for it
        code_b = drivers.start("B").wait(timeout=600)
        sc.note(f"driver B (resume) exited {code_b}")
        out = _tally(sc.db, planned, sc.seen)
        out.update(exits=f"A {code_a}, B {code_b}", stored_before_stop=stored_then,
                   one_line=last, imported=imported)  # fmt: skip
        return out
    finally:
        subprocess.run(["umount", mnt], check=False)


def shared(sc: Scenario) -> dict:
    first, planned = sc.drivers("first")
    second, _ = sc.drivers("second")
    a = first.start("A")
    sc.wait_ok(1, a)
    b_t0 = time.monotonic()
    code_b = second.start("B").wait(timeout=300)
    b_s = time.monotonic() - b_t0
    sc.note(f"driver B (sweep 'second') exited {code_b} in {b_s:.1f} s: {second.last_line('B')}")
    code_a = a.wait(timeout=600)
    code_b2 = second.start("B2").wait(timeout=600)
    sc.note(f"driver A exited {code_a}; B again exited {code_b2}: {second.last_line('B2')}")
    out = _tally(sc.db, planned, sc.seen)
    out.update(exits=f"A {code_a}, B {code_b} (refused), B again {code_b2}",
               one_line=second.last_line("B"), refused_in_s=round(b_s, 1))  # fmt: skip
    return out


def paused(sc: Scenario) -> dict:
    from sweep.results.lease import STALE_S

    drivers, planned = sc.drivers("paused")
    a = drivers.start("A")
    sc.wait_ok(2, a)
    a.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    sc.note(f"driver A SIGSTOPped for {STALE_S + 10:g} s")
    time.sleep(STALE_S + 2)
    code_b = drivers.start("B").wait(timeout=300)
    sc.note(f"driver B exited {code_b}: {drivers.last_line('B')}")
    time.sleep(max(0.0, STALE_S + 10 - (time.monotonic() - stopped)))
    a.send_signal(signal.SIGCONT)
    sc.note("driver A SIGCONTed")
    code_a = a.wait(timeout=600)
    sc.note(f"driver A exited {code_a}")
    out = _tally(sc.db, planned, sc.seen)
    out.update(exits=f"A {code_a}, B {code_b} (refused)", one_line=drivers.last_line("B"))
    return out


def stop_signal(sig: int, code: int):
    def scenario(sc: Scenario) -> dict:
        drivers, planned = sc.drivers(sc.name)
        a = drivers.start("A")
        sc.wait_ok(2, a)
        a.send_signal(sig)
        code_a = a.wait(timeout=300)
        sc.note(f"driver A exited {code_a} (want {code}): {drivers.last_line('A')[:120]}")
        code_b = drivers.start("B").wait(timeout=600)
        sc.note(f"driver B (resume) exited {code_b}")
        out = _tally(sc.db, planned, sc.seen)
        out.update(exits=f"A {code_a}, B {code_b}", one_line=drivers.last_line("A"))
        return out

    return scenario


SCENARIOS = {
    "disk-full": disk_full,
    "shared": shared,
    "paused": paused,
    "sigterm": stop_signal(signal.SIGTERM, 143),
    "sighup": stop_signal(signal.SIGHUP, 129),
}


def run(names: list[str], address: str, work: str, trials: int, trial_s: float) -> dict:
    results = {}
    for name in names:
        sc = Scenario(name, work, address, trials, trial_s)
        results[name] = SCENARIOS[name](sc)
        results[name]["wall_s"] = round(time.monotonic() - sc.t0, 1)
        print(f"[{name}] {results[name]}", flush=True)
    return results
