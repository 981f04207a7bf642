"""The pure schedules and the searcher's placement decisions: no Ray instance, no store."""

from __future__ import annotations

from cluster.placement import Capacity, capacity_of_nodes
from sweep.engine.schedule import (
    RUN,
    SKIP,
    STORED,
    BatchSearch,
    GridQueue,
    Schedule,
)
from sweep.engine.schedules import schedule_for
from sweep.plan.grid import expand, groups
from sweep.plan.sweepfile import parse
from tests.engine_helpers import make_searcher


class _Progress:
    def __init__(self):
        self.already = 0
        self.added = []

    def add(self, status, ran):
        self.added.append(status)


def _group(text):
    spec = parse(text, default_name="s")
    (members,) = groups(expand(spec)).values()
    return spec, members


def test_grid_queue_runs_one_at_a_time_and_an_oom_prunes_the_larger_batches():
    _, members = _group("axes: {batch_size: [8, 16, 32, 64]}\nfixed: {device: cpu}\n")
    q = GridQueue(list(reversed(members)), lambda key: None)  # any order in: ascending out
    step = q.ask()
    assert step.kind == RUN and step.trial.config.batch_size == 8
    assert q.ask() is None  # one in flight per group
    q.tell(step.trial, "ok")
    step = q.ask()
    assert step.trial.config.batch_size == 16
    q.tell(step.trial, "oom")
    skipped = [q.ask(), q.ask()]
    assert [s.kind for s in skipped] == [SKIP, SKIP]
    assert [s.trial.config.batch_size for s in skipped] == [32, 64]
    assert "batch 16" in skipped[0].reason
    assert q.ask() is None and q.done


def test_grid_queue_counts_stored_rows_and_a_stored_oom_still_prunes():
    _, members = _group("axes: {batch_size: [8, 16, 32]}\nfixed: {device: cpu}\n")
    stored = {members[0].key: "ok", members[1].key: "oom"}
    q = GridQueue(members, stored.get)
    assert [q.ask().kind, q.ask().kind] == [STORED, STORED]
    assert q.ask().kind == SKIP and q.done


def test_grid_queue_retry_runs_the_same_trial_next():
    _, members = _group("axes: {batch_size: [8, 16]}\nfixed: {device: cpu}\n")
    q = GridQueue(members, lambda key: None)
    first = q.ask().trial
    q.retry(first)
    assert q.ask().trial == first


def test_batch_search_doubles_then_bisects_to_the_exact_limit():
    _, members = _group("fixed: {device: cpu, batch_size: 8}\n")
    s = BatchSearch(members[0], lambda key: None, limit=1024)
    asked = []
    while (step := s.ask()) is not None:
        b = step.trial.config.batch_size
        asked.append(b)
        s.tell(step.trial, "ok" if b <= 100 else "oom")
    assert asked[:5] == [8, 16, 32, 64, 128]
    assert s.done and s.answer[1] == 100
    assert s.answer[0] == members[0].with_batch(100).key
    assert len(asked) == len(set(asked))  # no batch asked twice


def test_batch_search_stops_within_the_tolerance_and_a_failing_config_has_no_answer():
    _, members = _group("fixed: {device: cpu, batch_size: 8}\n")
    exact = BatchSearch(members[0], lambda key: None, limit=1024)
    loose = BatchSearch(members[0], lambda key: None, limit=1024, tolerance=0.1)
    n = {}
    for name, s in (("exact", exact), ("loose", loose)):
        n[name] = 0
        while (step := s.ask()) is not None:
            n[name] += 1
            s.tell(step.trial, "ok" if step.trial.config.batch_size <= 300 else "oom")
    assert exact.answer[1] == 300 and 300 * 0.9 <= loose.answer[1] <= 300
    assert n["loose"] < n["exact"]
    broken = BatchSearch(members[0], lambda key: None, limit=64)
    broken.tell(broken.ask().trial, "error")
    assert broken.done and broken.answer is None


def _drive(schedule: Schedule, outcome) -> list[tuple[str, int]]:
    """Run ``schedule`` to its end through the protocol alone, as the searcher does."""
    steps = []
    while (step := schedule.ask()) is not None:
        steps.append((step.kind, step.trial.config.batch_size))
        if step.kind == RUN:
            b = step.trial.config.batch_size
            schedule.tell(step.trial, outcome(b), {"peak_allocated_gib": b / 100})
    assert schedule.done
    return steps


def test_schedule_for_picks_the_modes_schedule_and_both_speak_the_protocol():
    grid_spec, members = _group("axes: {batch_size: [8, 16, 32]}\nfixed: {device: cpu}\n")
    grid = schedule_for(grid_spec, members, lambda key: None)
    search_spec, first = _group("mode: max-batch\nbatch_limit: 64\nfixed: {device: cpu}\n")
    search = schedule_for(search_spec, first, lambda key: None)
    assert type(grid) is GridQueue and type(search) is BatchSearch
    assert isinstance(grid, Schedule) and isinstance(search, Schedule)
    fits = lambda b: "ok" if b <= 16 else "oom"  # noqa: E731
    assert _drive(grid, fits) == [(RUN, 8), (RUN, 16), (RUN, 32)]
    assert grid.answer is None and grid.prediction(members[0].key) is None
    assert grid.probes == [t.key for t in members]
    steps = _drive(search, fits)
    assert steps[:6] == [(RUN, 1), (RUN, 2), (RUN, 4), (RUN, 8), (RUN, 16), (RUN, 32)]
    assert search.answer == (first[0].with_batch(16).key, 16)
    assert len(search.probes) == len(steps)


def test_grid_queue_probes_count_a_retried_trial_once():
    _, members = _group("axes: {batch_size: [8, 16]}\nfixed: {device: cpu}\n")
    q = GridQueue(members, lambda key: None)
    first = q.ask().trial
    q.retry(first)
    assert _drive(q, lambda b: "ok") == [(RUN, 8), (RUN, 16)]
    assert q.probes == [t.key for t in members]


def test_abandon_returns_what_is_left_unrun_and_ends_the_schedule():
    _, members = _group("axes: {batch_size: [8, 16, 32]}\nfixed: {device: cpu}\n")
    q = GridQueue(members, lambda key: None)
    running = q.ask().trial
    assert q.abandon([running]) == members  # the lost one first, then those never asked
    assert q.done and q.ask() is None

    _, (first,) = _group("mode: max-batch\nfixed: {device: cpu, batch_size: 8}\n")
    s = BatchSearch(first, lambda key: None, limit=1024)
    s.tell(s.ask().trial, "ok")
    assert s.abandon([]) == [first.with_batch(16)]  # nothing in flight: the probe it would ask
    assert s.done and s.ask() is None
    s = BatchSearch(first, lambda key: None, limit=1024)
    lost = s.ask().trial
    assert s.abandon([lost]) == [lost]
    assert s.done and s.answer is None


def test_capacity_counts_gpus_per_type_limited_by_the_nodes_cpus():
    nodes = [
        {"Resources": {"CPU": 4.0, "GPU": 1.0, "accelerator_type:V100": 1.0}},
        {"Resources": {"CPU": 8.0, "GPU": 2.0, "accelerator_type:A100": 1.0}},
        {"Resources": {"CPU": 1.0, "GPU": 4.0, "accelerator_type:H100": 1.0}},  # 1 CPU: 1 trial
    ]
    cap = capacity_of_nodes(nodes, cpus_per_trial=1)
    assert cap.of((True, "V100")) == 1 and cap.of((True, "A100")) == 2
    assert cap.of((True, "H100")) == 1 and cap.of((True, None)) == 4
    assert cap.of((False, None)) == 13 and cap.of((True, "T4")) == 0
    assert capacity_of_nodes(nodes, cpus_per_trial=2).of((True, "H100")) == 0


def _fleet_searcher(capacity, clock=None, node_wait_s=60.0):
    text = (
        "name: fleet\ngpu_types: [V100, A100]\naxes: {seed: [0, 1, 2, 3]}\nfixed: {device: cuda}\n"
    )
    spec = parse(text)
    written = []
    s = make_searcher(
        spec,
        write=written.append,
        progress=_Progress(),
        has_gpu=True,
        types={"V100": 1, "A100": 2},
        capacity=lambda: capacity[0],
        node_wait_s=node_wait_s,
        clock=clock or (lambda: 0.0),
    )
    return s, written


def test_a_scarce_type_does_not_starve_a_plentiful_one():
    cap = [Capacity({(True, "V100"): 1, (True, "A100"): 2})]
    s, _ = _fleet_searcher(cap)
    handed = []
    while (payload := s.suggest(f"t{len(handed)}")) not in (None, s.FINISHED):
        handed.append(payload["gpu_type"])
    # 1 V100 and 2 A100 trials at once: the V100 queue waits, the A100s run side by side
    assert sorted(handed) == ["A100", "A100", "V100"]


def test_a_lost_node_drains_its_type_after_the_wait_and_the_sweep_ends():
    now = [0.0]
    cap = [Capacity({(True, "V100"): 1, (True, "A100"): 2})]
    s, written = _fleet_searcher(cap, clock=lambda: now[0], node_wait_s=30.0)
    s.retries = 1  # the crashed trial is run again: it waits for a V100 with the others
    live = {}
    n = 0

    def hand_out():
        nonlocal n
        while (payload := s.suggest(f"t{n}")) not in (None, s.FINISHED):
            live[f"t{n}"] = payload
            n += 1
        return payload

    hand_out()
    v100 = [tid for tid, p in live.items() if p["gpu_type"] == "V100"]
    cap[0] = Capacity({(True, "A100"): 2})  # the V100 node is gone
    now[0] += 2.0
    s.on_trial_complete(v100[0], error=True)  # its trial's actor died with it
    del live[v100[0]]
    for _ in range(20):  # A100 trials keep running while V100s wait
        for tid in [t for t, p in live.items() if p["gpu_type"] == "A100"]:
            s.on_trial_complete(tid, {"status": "ok"})
            del live[tid]
        last = hand_out()
        now[0] += 5.0
        if last == s.FINISHED:
            break
    assert last == s.FINISHED  # the sweep ends
    assert not any(p["gpu_type"] == "V100" for p in live.values())
    rows = {(r.gpu_type, r.status) for r in written}
    assert rows == {("V100", "no_gpu_type")}
    assert len(written) == 4  # every V100 trial is a row, the retried one included
    assert "30 s" in written[0].error


def test_a_crashed_trial_is_retried_then_left_to_its_row():
    cap = [Capacity({(True, "V100"): 8, (True, "A100"): 8})]
    s, _ = _fleet_searcher(cap)
    s.retries = 1
    payload = s.suggest("t0")
    key = payload["key"]
    assert s.will_retry(key)
    s.on_trial_complete("t0", error=True)
    again = [s.suggest(f"t{i}") for i in range(1, 9)]
    assert key in [p["key"] for p in again if isinstance(p, dict)]
    assert not s.will_retry(key)  # the second attempt is the last
