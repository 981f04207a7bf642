"""What the sweep engine costs per trial, outside the trial's own work.

Runs sweeps of trials whose body does (almost) nothing through the whole engine (searcher, a
fresh Ray worker process per trial, the trainable adapter, the store callback, SQLite), on a
local Ray instance, and prints:

- trials per minute for no-op trials;
- engine overhead per trial: wall seconds x concurrent trial slots / trials, minus the trial
  bodies' own mean seconds (what each GPU slot loses per trial);
- the same for a body that imports torch and transformers (what a real trial does first),
  with and without the worker pre-import hook (sweep.engine.forkserver.preimport), to show whether
  importing them at worker start-up pays off, and with worker processes reused across trials
  (--reuse-workers);
- the real trial (sweep.trial.run:run_trial on bert-tiny, CPU) in a fresh Ray worker per trial
  (--no-isolate) against the default: a fresh process per trial forked from the worker's warm
  fork server (sweep/engine/forkserver.py), which keeps the imports out of every trial but the
  first;
- the isolated real trial before and after the trial process's shortcuts (TSWEEP_TRIAL_SHORTCUTS=0
  turns them off: the node's software captured once per fork server, the FLOP count reused per
  workload shape, no memory release or interpreter teardown in a process about to exit), side by
  side in one run, with the mean time budget of a trial process (fork, CUDA start, environment,
  build, FLOP count, warm-up, measure, release, exit) for each.

    python benchmarks/sweep_overhead.py                 # 12 trials per scenario
    python benchmarks/sweep_overhead.py --trial-process-only
    python benchmarks/sweep_overhead.py --trials 24 --num-cpus 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def noop_trial(config):
    """Returns at once."""
    from sweep.results.record import OK, Trial

    return Trial(config=config.to_dict(), status=OK, metrics={"trial_s": 0.0})


def import_trial(config):
    """Imports torch and transformers, as the real trial does first; reports how long it took
    (near zero when the worker pre-imported them)."""
    from sweep.results.record import OK, Trial

    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    return Trial(config=config.to_dict(), status=OK, metrics={"trial_s": time.perf_counter() - t0})


def run(
    name: str,
    fn: str,
    trials: int,
    preimport: bool,
    slots: int,
    reuse: bool = False,
    isolate: bool = False,
    shortcuts: bool = True,
) -> dict:
    import ray

    from sweep.plan.handoff import SHORTCUTS_ENV

    os.environ[SHORTCUTS_ENV] = "1" if shortcuts else "0"  # Ray's local workers inherit it
    from sweep.engine.run import EngineOptions, run_sweep
    from sweep.plan import sweepfile
    from sweep.results.store import Store

    # distinct seeds: distinct groups, so that trials run side by side on every slot
    spec = sweepfile.parse(
        f"name: {name}\naxes: {{seed: {list(range(trials))}}}\n"
        "fixed: {device: cpu, model: bert-tiny}\ntimeout_s: 300\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "r.db")
        t0 = time.perf_counter()
        run_sweep(
            spec,
            EngineOptions(
                db=db,
                trial_fn=fn,
                preimport=preimport,
                retries=0,
                progress=False,
                num_cpus=slots,
                reuse_workers=reuse,
                isolate=isolate,
            ),
        )
        wall = time.perf_counter() - t0
        rows = Store(db).trials()
    ray.shutdown()  # the pre-import hook is set per Ray job: a fresh instance per scenario
    assert len(rows) == trials and all(r.status == "ok" for r in rows), [r.status for r in rows]
    body = statistics.mean(r.metrics.get("trial_s") or 0.0 for r in rows)
    budget = {
        k: statistics.mean(r.metrics.get(k) or 0.0 for r in rows)
        for k in BUDGET
        if any(r.metrics.get(k) is not None for r in rows)
    }
    return {
        "budget": budget,
        "name": name,
        "wall_s": wall,
        "per_min": trials / wall * 60,
        "overhead_s": wall * slots / trials - body,
        "body_s": body,
    }


# A trial process's seconds, in the order they happen (record metrics; absent ones are skipped).
BUDGET = (
    "time_fork_s",
    "time_cuda_init_s",
    "time_env_s",
    "setup_s",
    "time_flops_s",
    "warmup_s",
    "measure_s",
    "time_release_s",
    "time_exit_s",
    "time_process_s",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=os.cpu_count() or 1,
        help="concurrent trial slots (Ray CPUs, one per trial)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="before/after pairs, alternating which runs first (the means are printed)",
    )
    parser.add_argument(
        "--trial-process-only",
        action="store_true",
        help="only the isolated real trial, before and after the trial process's shortcuts",
    )
    args = parser.parse_args()
    os.chdir(REPO)  # Ray puts the driver's directory on the workers' path: benchmarks.* imports

    from benchmarks._machine import machine

    print(f"machine: {machine()}; {os.cpu_count()} CPU cores, {args.num_cpus} trial slots")
    me = "benchmarks.sweep_overhead:"
    real = "sweep.trial.run:run_trial"
    pair = _pair(real, args.trials, args.num_cpus, args.rounds)
    if args.trial_process_only:
        _print(pair)
        _print_pair(*pair)
        return 0
    results = [
        run("noop", me + "noop_trial", args.trials, preimport=False, slots=args.num_cpus),
        run("import", me + "import_trial", args.trials, preimport=False, slots=args.num_cpus),
        run(
            "import-preimport",
            me + "import_trial",
            args.trials,
            preimport=True,
            slots=args.num_cpus,
        ),
        run(
            "import-reuse",
            me + "import_trial",
            args.trials,
            preimport=False,
            slots=args.num_cpus,
            reuse=True,
        ),
    ]
    results += [
        run("real-fresh-worker", real, args.trials, preimport=False, slots=args.num_cpus),
        run(
            "real-isolated",
            real,
            args.trials,
            preimport=False,
            slots=args.num_cpus,
            isolate=True,
        ),
    ]
    _print(results + pair)
    base, pre, reuse = results[1], results[2], results[3]
    print(
        f"speed against importing in each fresh trial process: pre-import "
        f"{base['wall_s'] / pre['wall_s']:.2f}x ({pre['body_s']:.2f} s of import left in the "
        f"body vs {base['body_s']:.2f} s), reused workers {base['wall_s'] / reuse['wall_s']:.2f}x"
    )
    fresh, isolated = results[4], results[5]
    print(
        f"real trials: isolated (default) {fresh['wall_s'] / isolated['wall_s']:.2f}x the speed of "
        f"a fresh Ray worker per trial; overhead per trial {fresh['overhead_s']:.2f} s -> "
        f"{isolated['overhead_s']:.2f} s"
    )
    _print_pair(*pair)
    return 0


def _pair(fn: str, trials: int, slots: int, rounds: int) -> list[dict]:
    """The isolated real trial without and with the shortcuts, ``rounds`` times, alternating
    which goes first (a machine's first sweep pays for cold caches); the means of each."""
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for i in range(max(1, rounds)):
        for on in (False, True) if i % 2 == 0 else (True, False):
            name = "real-isol-" + ("after" if on else "before")
            runs[on].append(run(name, fn, trials, False, slots, isolate=True, shortcuts=on))
    out = []
    for on in (False, True):
        rs = runs[on]
        mean = {k: statistics.mean(r[k] for r in rs) for k in ("wall_s", "per_min", "overhead_s")}
        mean["body_s"] = statistics.mean(r["body_s"] for r in rs)
        keys = {k for r in rs for k in r["budget"]}
        mean["budget"] = {k: statistics.mean(r["budget"].get(k, 0.0) for r in rs) for k in keys}
        out.append({"name": rs[0]["name"] + f" x{len(rs)}", **mean})
    return out


def _print(results: list[dict]) -> None:
    print(
        f"{'scenario':<18} {'trials/min':>10} {'wall s':>8} {'body s':>8} {'overhead s/trial':>17}"
    )
    for r in results:
        print(
            f"{r['name']:<18} {r['per_min']:>10.1f} {r['wall_s']:>8.1f} {r['body_s']:>8.2f} "
            f"{r['overhead_s']:>17.2f}"
        )


def _print_pair(before: dict, after: dict) -> None:
    """The trial process's mean time budget before and after its shortcuts, side by side."""
    print(f"{'trial process, mean s':<22} {'before':>8} {'after':>8}")
    for k in BUDGET:
        if k in before["budget"] or k in after["budget"]:
            b, a = before["budget"].get(k, 0.0), after["budget"].get(k, 0.0)
            print(f"{k:<22} {b:>8.3f} {a:>8.3f}")
    print(
        f"shortcuts: sweep wall {before['wall_s']:.1f} s -> {after['wall_s']:.1f} s "
        f"({before['wall_s'] / after['wall_s']:.2f}x); overhead per trial "
        f"{before['overhead_s']:.2f} s -> {after['overhead_s']:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
