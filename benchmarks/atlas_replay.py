"""Replay a stored max-seq / max-batch atlas against today's searches, offline: how many probes
would the searches take now, and do they reach the same answers? (Issue 24's probe counts, read
again after a change to the search, without a GPU.)

Each probe the searches ask is answered from the stored run: the stored row of that exact
configuration where the run had it (its measurement fields aside); else, where the run found
that group's answer, ok up to the answer and out of memory past it, a probe that fits reading the
allocated peak off the broken line of its family's stored ok probes (every card: the step
allocates the same) and the reserved and NVML peaks off its own card's; else the replay cannot
say, and stops that group (counted as "unknown").

    python benchmarks/atlas_replay.py benchmarks/results/2026-12-07-h100/atlas-1b.jsonl \\
        --sweep benchmarks/sweeps/h200-atlas-1b.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.engine.schedule import RUN, SKIP, STORED  # noqa: E402
from sweep.engine.schedules import schedules_for  # noqa: E402
from sweep.plan.grid import expand, groups  # noqa: E402
from sweep.plan.sweepfile import load  # noqa: E402
from sweep.results.record import Trial  # noqa: E402


def _axis(config: dict, mode: str) -> int:
    return config["seq_len"] if mode == "max-seq" else config["batch_size"]


def replay(records: list[Trial], spec) -> list[dict]:
    by_key = {_probe_of(r): r for r in records}
    by_group: dict[str, list[Trial]] = defaultdict(list)
    by_family: dict[str, list[Trial]] = defaultdict(list)
    for r in records:
        by_group[_group_of(r)].append(r)
        by_family[_group_of(r, family=True)].append(r)
    member_lists = list(groups(expand(spec)).values())
    scheds = schedules_for(spec, member_lists, lambda key: None)
    names = [_group_of(members[0]) for members in member_lists]
    answers, curves, stated = {}, {}, {}
    for members, s, group in zip(member_lists, scheds, names, strict=True):
        rows = by_group[group]
        ans = [
            r.metrics[s.answer_metric] for r in rows if r.metrics.get(s.answer_metric) is not None
        ]
        answers[group] = ans[0] if ans else None
        # what the step allocates is the same on every card: the family's ok probes, all cards;
        # what the allocator reserves (and NVML sees) depends on the card: the group's own
        family = by_family[_group_of(members[0], family=True)]
        curves[group] = {
            name: sorted(
                {
                    _axis(r.config, spec.mode): r.metrics[name]
                    for r in (family if name == "peak_allocated_gib" else rows)
                    if r.status == "ok" and r.metrics.get(name)
                }.items()
            )
            for name in SYNTHETIC
        }
        # what every row of the group states whatever its status (the cap, the context, the
        # card's total), from any stored row of it
        keep = ("capacity_cap_gib", "cuda_context_gib", "device_total_gib")
        stated[group] = {k: rows[0].metrics[k] for k in keep if rows and rows[0].metrics.get(k)}
    unknown: set[int] = set()
    asked: list[list[str]] = [[] for _ in scheds]  # each search's probes: length or batch, outcome
    done = [False] * len(scheds)
    while not all(done):
        moved = False
        for i, s in enumerate(scheds):
            if done[i] or s.done:
                done[i] = True
                continue
            step = s.ask()
            if step is None:
                continue
            moved = True
            if step.kind in (SKIP, STORED):
                continue
            assert step.kind == RUN
            t, group = step.trial, names[i]
            n = _axis(t.config.to_dict(), spec.mode)
            if _probe_of(t) in by_key:
                r = by_key[_probe_of(t)]
                asked[i].append(f"{n}{'+' if r.status == 'ok' else 'x'}")
                s.tell(t, r.status, r.metrics)
                continue
            ans = answers.get(group)
            if ans is None:
                unknown.add(i)
                done[i] = True
                continue
            asked[i].append(f"{n}{'+' if n <= ans else 'x'}")
            if n <= ans:
                s.tell(t, "ok", _synthetic(curves[group], n, stated[group]))
            else:
                s.tell(t, "oom", dict(stated[group]))
        if not moved and not all(d or s.done for d, s in zip(done, scheds, strict=True)):
            break
    out = []
    for i, (members, s, group) in enumerate(zip(member_lists, scheds, names, strict=True)):
        c = members[0].config
        out.append(
            dict(
                finetune=c.finetune,
                checkpointing=c.gradient_checkpointing,
                capacity_gb=c.capacity_gb,
                stored_answer=answers.get(group),
                stored_probes=len(by_group[group]),
                answer=None if i in unknown or s.answer is None else s.answer[1],
                probes=len(s.probes),
                unknown=i in unknown,
                asked=asked[i],
            )
        )
    return out


def _group_of(r, family: bool = False) -> str:
    """A search's group whatever length or batch it probed: the fields that shape what the step
    holds in memory (not how it was measured: a stored run without ``profile_step: false`` is the
    same search), but the length and the batch (and, for its ``family``, the card size too)."""
    from sweep.plan.config import TrialConfig, shape_fields

    config = r.config.to_dict() if isinstance(r.config, TrialConfig) else dict(r.config)
    config = TrialConfig(**config).to_dict()  # every field, defaults filled
    leave = ("seq_len", "batch_size", "capacity_gb") if family else ("seq_len", "batch_size")
    return json.dumps({k: config[k] for k in shape_fields() if k not in leave})


def _probe_of(r) -> tuple[str, int, int]:
    """One probe: its group, the length and the batch it ran (a stored trial or one asked)."""
    from sweep.plan.config import TrialConfig

    config = r.config.to_dict() if isinstance(r.config, TrialConfig) else dict(r.config)
    return _group_of(r), config["seq_len"], config["batch_size"]


# The peaks a replayed probe that fits reads, each off the broken line of the stored ok probes.
SYNTHETIC = ("peak_allocated_gib", "peak_reserved_gib", "nvml_peak_used_gib")


def _synthetic(curves: dict[str, list[tuple[int, float]]], n: int, base: dict) -> dict:
    out = dict(base)
    for name, curve in curves.items():
        if len(curve) < 2:
            continue
        xs = [x for x, _ in curve]
        i = next((j for j in range(1, len(xs) - 1) if xs[j] >= n), len(xs) - 1)
        (x0, y0), (x1, y1) = curve[i - 1], curve[i]
        out[name] = y0 + (y1 - y0) / (x1 - x0) * (n - x0) if x1 != x0 else y0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", help="JSONL records of the stored atlas")
    p.add_argument("--sweep", required=True, help="the sweep file it ran")
    p.add_argument("--json", help="write the rows here")
    p.add_argument(
        "--trace", action="store_true", help="print each search's probes (+ fits, x does not)"
    )
    args = p.parse_args(argv)
    records = [
        Trial.from_json(line) for line in open(args.records, encoding="utf-8") if line.strip()
    ]
    spec = load(args.sweep)
    rows = replay(records, spec)
    print(
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}), offline replay"
    )
    print(
        f"{'finetune':8} {'ckpt':5} {'card':>5} {'stored':>7} {'probes':>6} {'now':>7} "
        f"{'probes':>6}"
    )
    for r in rows:
        card = "-" if r["capacity_gb"] is None else f"{r['capacity_gb']:g}"
        now = "?" if r["unknown"] else str(r["answer"])
        print(
            f"{r['finetune']:8} {str(r['checkpointing']):5} {card:>5} {str(r['stored_answer']):>7} "
            f"{r['stored_probes']:>6} {now:>7} {r['probes']:>6}"
            + (f"  {' '.join(r['asked'])}" if args.trace else "")
        )
    known = [r for r in rows if not r["unknown"] and r["stored_answer"] is not None]
    same = sum(r["answer"] == r["stored_answer"] for r in known)
    print(
        f"{len(known)} groups with a stored answer: {same} answered the same; probes stored "
        f"{sum(r['stored_probes'] for r in known)}, now {sum(r['probes'] for r in known)}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
