"""The memory-guided max-batch search (sweep/engine/memory_guide.py through BatchSearch), replayed
on the H200's max-batch records: no GPU, no Ray."""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import pytest

from sweep.engine.schedule import BatchSearch, with_prediction
from sweep.plan.grid import expand, groups
from sweep.plan.sweepfile import parse

H200_RUN = Path(__file__).parents[1] / "benchmarks/results/2026-11-29-h200-run3/records.jsonl"
TOTAL_GIB = 139.80072021484375


def _first(batch=64):
    spec = parse(f"fixed: {{device: cpu, batch_size: {batch}}}\n", default_name="s")
    (members,) = groups(expand(spec)).values()
    return members[0]


def _h200_models():
    """model -> {batch: (NVML peak, reserved peak)} of the ok probes of both max-batch sweeps."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for line in H200_RUN.read_text().splitlines():
        r = json.loads(line)
        if r["sweep"].startswith("h200-max-batch") and r["status"] == "ok":
            m = r["metrics"]
            peaks = (m["nvml_peak_used_gib"], m["peak_reserved_gib"])
            out.setdefault(r["config"]["model"], {})[r["config"]["batch_size"]] = peaks
    return out


class Oracle:
    """A card that fits every batch up to ``answer``, with peaks interpolated linearly between
    the recorded ones (``peaks``: batch -> GiB); ``None`` as a peak: no memory reading."""

    def __init__(self, answer, peaks, total_gib=TOTAL_GIB, source="nvml_peak_used_gib"):
        self.answer, self.total, self.source = answer, total_gib, source
        self.xs = sorted(peaks)
        self.ys = [peaks[x] for x in self.xs]

    def peak(self, b):
        i = bisect.bisect_left(self.xs, b)
        if i < len(self.xs) and self.xs[i] == b:
            return self.ys[i]
        if i == 0:
            i = 1
        if i == len(self.xs):
            i -= 1
        (x0, y0), (x1, y1) = (self.xs[i - 1], self.ys[i - 1]), (self.xs[i], self.ys[i])
        return y0 + (y1 - y0) * (b - x0) / (x1 - x0)

    def run(self, b):
        if b > self.answer:
            return "oom", None
        if self.source is None:
            return "ok", {"device_total_gib": None}
        return "ok", {self.source: self.peak(b), "device_total_gib": self.total}


def search(oracle, first=64, limit=4096, tolerance=0.0):
    s = BatchSearch(_first(first), lambda key: None, limit=limit, tolerance=tolerance)
    asked, rows = [], {}
    while (step := s.ask()) is not None:
        b = step.trial.config.batch_size
        asked.append(b)
        status, metrics = oracle.run(b)
        rows[step.trial.key] = with_prediction(metrics or {}, s.predictions.get(step.trial.key))
        s.tell(step.trial, status, metrics)
        assert len(asked) < 60, asked  # bounded
    assert len(asked) == len(set(asked)), asked  # no batch asked twice
    return s, asked, rows


@pytest.fixture(scope="module")
def h200():
    return _h200_models()


H200_LIVE = Path(__file__).parents[1] / "benchmarks/results/2026-12-02-h200/max-batch-cut.jsonl"


def _h200_live():
    """model -> ({batch: (NVML peak, reserved peak)} of the ok probes, the answer) of the
    max-batch preset run live on the H200 on 2026-12-02 (from batch 8, the preset's start; the
    lease ended before distilroberta-base and roberta-base finished: their answers are run 3's
    1354, which the cut run bracketed in [1354, 1376], and 702, in its [701, 704])."""
    answers = {"distilroberta-base": 1354, "roberta-base": 702}
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for line in H200_LIVE.read_text().splitlines():
        r = json.loads(line)
        m, c = r["metrics"], r["config"]
        if r["status"] == "ok":
            peaks = (m["nvml_peak_used_gib"], m["peak_reserved_gib"])
            out.setdefault(c["model"], {})[c["batch_size"]] = peaks
        if m.get("max_batch_size") is not None:
            answers[c["model"]] = m["max_batch_size"]
    return {model: (peaks, answers[model]) for model, peaks in out.items()}


@pytest.mark.parametrize("source", [0, 1], ids=["nvml", "reserved"])
def test_h200_live_probes_replayed_from_batch_8_in_at_most_36(source):
    # The 2026-12-02 run itself (the previous guide) asked 51 probes for four models and a
    # half; its readings replayed through this guide, from the preset's first batch
    name = ("nvml_peak_used_gib", "peak_reserved_gib")[source]
    total, answers = 0, {}
    for model, (recorded, answer) in _h200_live().items():
        peaks = {b: p[source] for b, p in recorded.items()}
        s, asked, _ = search(Oracle(answer, peaks, source=name), first=8)
        answers[model], total = s.answer[1], total + len(asked)
    assert answers == {
        "distilroberta-base": 1354,
        "roberta-base": 702,
        "roberta-large": 264,
        "bert-base-uncased": 705,
        "bert-large-uncased": 266,
        "gpt2": 326,
    }
    assert total <= 36, total  # doubling and bisection alone: 80; the previous guide: 57


@pytest.mark.parametrize("first,most", [(8, 36), (64, 38)])
@pytest.mark.parametrize("source", [0, 1], ids=["nvml", "reserved"])
def test_h200_replay_exact_answers_in_few_probes(h200, source, first, most):
    name = ("nvml_peak_used_gib", "peak_reserved_gib")[source]
    answers, total = {}, 0
    for model, recorded in h200.items():
        peaks = {b: p[source] for b, p in recorded.items()}
        s, asked, rows = search(Oracle(max(recorded), peaks, source=name), first=first)
        answers[model] = s.answer[1]
        total += len(asked)
        # every probe asked once the line existed carries its prediction; those that fitted
        # carry its error too, and near the limit the line is within a few percent
        guided = [r for r in rows.values() if "predicted_limit_batch" in r]
        assert len(guided) >= len(asked) - 2
        errors = [abs(r["prediction_error_pct"]) for r in guided if "prediction_error_pct" in r]
        assert errors and max(errors) < 5.0
    assert answers == {
        "roberta-base": 704,
        "roberta-large": 264,
        "gpt2": 326,
        "distilroberta-base": 1354,
        "bert-base-uncased": 705,
        "bert-large-uncased": 265,
    }
    assert total <= most, total  # doubling and bisection alone: 80


def _linear(answer, fixed=2.0, per_seq=0.1, total=TOTAL_GIB):
    return Oracle(answer, {1: fixed + per_seq, 2: fixed + 2 * per_seq}, total_gib=total)


def test_exact_on_invented_cards_and_never_worse_than_plain_search_by_much():
    for answer in (3, 65, 100, 127, 129, 500, 1000, 1354, 4000):
        for per_seq in (0.03, 0.1, 0.5):
            fixed = 2.0
            total = fixed + per_seq * (answer + 0.5)  # the limit falls between answer and +1
            s, asked, _ = search(_linear(answer, fixed, per_seq, total - 0.5))
            assert s.answer[1] == answer, (answer, per_seq, asked)
            assert len(asked) <= 14, (answer, per_seq, asked)


def test_first_probe_oom_and_a_limit_within_three_probes():
    s, asked, _ = search(_linear(40, per_seq=1.0))
    assert asked[0] == 64 and s.answer[1] == 40
    s, asked, _ = search(_linear(100, per_seq=1.0))
    assert asked[:2] == [64, 128] and s.answer[1] == 100
    s, asked, _ = search(_linear(0))  # nothing fits: bisection down to 1, answer 0
    assert s.answer[1] == 0


def test_no_memory_readings_give_plain_doubling_and_bisection():
    plain = BatchSearch(_first(8), lambda key: None, limit=1024)
    expect = []
    while (step := plain.ask()) is not None:
        b = step.trial.config.batch_size
        expect.append(b)
        plain.tell(step.trial, "ok" if b <= 100 else "oom")
    s, asked, rows = search(Oracle(100, {1: 1.0, 2: 2.0}, source=None), first=8, limit=1024)
    assert asked == expect and s.answer[1] == 100
    assert not s.predictions and all("predicted_limit_batch" not in r for r in rows.values())


def test_noisy_and_non_linear_memory_stays_exact():
    import random

    rng = random.Random(0)
    # superlinear (attention-like) growth, and readings off by up to 3 GiB either way
    peaks = {b: 2 + 0.05 * b + 2e-5 * b * b + rng.uniform(-3, 3) for b in range(1, 2000, 7)}
    for answer in (333, 1200):
        s, asked, _ = search(Oracle(answer, peaks))
        assert s.answer[1] == answer and len(asked) <= 25, asked
    # memory that does not grow with the batch: no line, plain search
    s, asked, _ = search(Oracle(700, {1: 5.0, 2000: 5.0}))
    assert s.answer[1] == 700


def test_tolerance_and_the_batch_limit_still_hold():
    s, asked, _ = search(_linear(1354), tolerance=0.05)
    lo, hi = s.lo, s.hi
    assert lo <= 1354 and (hi is None or hi - lo <= lo * 0.05)
    s, asked, _ = search(_linear(5000, per_seq=0.01), limit=3000)
    assert s.answer[1] == 3000 and max(asked) == 3000


def test_with_prediction_adds_the_error_on_the_same_source_only():
    pred = {
        "predicted_limit_batch": 700,
        "predicted_peak_gib": 101.0,
        "predicted_peak_source": "nvml_peak_used_gib",
    }
    got = with_prediction({"nvml_peak_used_gib": 100.0, "device_total_gib": 139.8}, pred)
    assert got["prediction_error_pct"] == pytest.approx(1.0)
    assert got["predicted_limit_batch"] == 700 and "predicted_peak_source" not in got
    oom = with_prediction({}, pred)  # an OOM probe: the prediction, no error
    assert oom["predicted_peak_gib"] == 101.0 and "prediction_error_pct" not in oom
    assert with_prediction({"a": 1}, None) == {"a": 1}


def test_the_gpu_checks_search_from_a_prediction_is_exact():
    from benchmarks.memory_model_check import _largest_fitting

    for answer in (33, 64, 100, 263, 1354):
        for start in (answer - 40, answer - 1, answer, answer + 1, answer + 30, 4 * answer):
            got, probes = _largest_fitting(lambda b, a=answer: b <= a, 32, start)
            assert got == answer and probes <= 24, (answer, start, probes)


def test_a_resumed_search_asks_for_its_stored_probes_again(h200):
    from sweep.engine.schedule import RUN, STORED

    recorded = h200["distilroberta-base"]
    oracle = Oracle(max(recorded), {b: p[0] for b, p in recorded.items()})
    first = _first()
    done = BatchSearch(first, lambda key: None, limit=4096)
    stored = {}
    while (step := done.ask()) is not None:
        status, metrics = oracle.run(step.trial.config.batch_size)
        stored[step.trial.key] = (status, metrics)
        done.tell(step.trial, status, metrics)
    again = BatchSearch(
        first,
        lambda key: stored[key][0] if key in stored else None,
        limit=4096,
        stored_metrics=lambda key: stored[key][1],
    )
    kinds = []
    while (step := again.ask()) is not None:
        kinds.append(step.kind)
        assert step.kind != RUN, (kinds, step.trial.config.batch_size)
    assert kinds == [STORED] * len(stored) and again.answer == done.answer


def test_seen_peaks_leave_the_drivers_own_region_out_of_what_is_held_outside_the_allocator():
    from sweep.engine.memory_guide import SeenPeaks

    # the H200 of 2026-12-07: NVML's total 140.40 GiB, CUDA's 139.80 (the driver keeps 0.60 GiB,
    # which NVML counts as used); 1.35 GiB of NVML's peak over the reserved one is 0.75 outside
    seen = SeenPeaks()
    metrics = {"peak_allocated_gib": 8.0, "peak_reserved_gib": 8.8, "device_total_gib": 139.8}
    seen.add(16, {**metrics, "nvml_peak_used_gib": 10.15, "nvml_total_gib": 140.4})
    assert seen.outside[16] == pytest.approx(0.75)
    assert seen.room[16] == pytest.approx(139.8 - 0.75)
    # a record without NVML's total (before 2026-12-07): the whole difference, as it was read
    seen.add(32, {**metrics, "nvml_peak_used_gib": 10.15})
    assert seen.outside[32] == pytest.approx(1.35)
