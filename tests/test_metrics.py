"""Metric arithmetic on invented numbers (no torch, no clock)."""

import math

import pytest

from sweep.trial import metrics as M
from sweep.trial.hardware import gpu_peak, peak_tflops
from sweep.trial.telemetry import summarize_nvml, throttle_names


def test_percentile_matches_linear_interpolation():
    xs = [10.0, 20.0, 30.0, 40.0]
    assert M.percentile(xs, 50) == 25.0
    assert M.percentile(xs, 10) == pytest.approx(13.0)
    assert M.percentile(xs, 90) == pytest.approx(37.0)
    assert M.percentile([5.0], 90) == 5.0
    assert M.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter


def test_summary_of_step_times():
    s = M.summarize_ms([10.0, 12.0, 11.0, 30.0, 11.0])
    assert s["step_time_ms_p50"] == 11.0  # the median ignores the straggler
    assert s["step_time_ms_mean"] == pytest.approx(14.8)
    assert s["step_time_ms_std"] == pytest.approx(
        math.sqrt(((4.8**2) * 1 + 2.8**2 + 3.8**2 * 2 + 15.2**2) / 5)
    )
    with pytest.raises(ValueError):
        M.summarize_ms([])


def test_throughput_counts_the_whole_step():
    t = M.throughput(batch_size=32, seq_len=128, step_time_ms=100.0)
    assert t["sequences_per_s"] == pytest.approx(320.0)
    assert t["tokens_per_s"] == pytest.approx(320.0 * 128)
    with pytest.raises(ValueError):
        M.throughput(1, 1, 0.0)


def test_phase_split_adds_up_to_the_step():
    # two steps: start, fwd end, bwd end, opt end; then the end of the last step
    rows = [[0.0, 3.0, 9.0, 10.0], [10.5, 13.0, 19.0, 20.0], [21.0]]
    steps, phases = M.phase_split_ms(rows, ("forward", "backward", "optimizer"))
    assert steps == [10.5, 10.5]
    assert phases["forward"] == [3.0, 2.5]
    assert phases["backward"] == [6.0, 6.0]
    assert phases["optimizer"] == [1.0, 1.0]
    assert phases["other"] == [0.5, 1.0]
    for i, step in enumerate(steps):
        assert sum(p[i] for p in phases.values()) == pytest.approx(step)
    with pytest.raises(ValueError):
        M.phase_split_ms([[0.0, 1.0], [2.0]], ("forward", "backward"))


def test_analytic_flops_is_6n_plus_attention():
    # nanoGPT's example: N=124M-ish, L=12, d=768, T=1024
    per_tok = M.analytic_flops_per_token(85_000_000, 12, 768, 1024)
    assert per_tok == 6 * 85_000_000 + 12 * 12 * 768 * 1024
    assert M.analytic_flops_per_token(85_000_000, 12, 768, 1024, train=False) == per_tok / 3


def test_mfu_and_unknown_peak():
    achieved = M.achieved_tflops(flops_per_step=4.0e12, step_time_ms=10.0)
    assert achieved == pytest.approx(400.0)
    assert M.mfu(achieved, 989.4) == pytest.approx(400.0 / 989.4)
    assert M.mfu(achieved, None) is None  # unknown GPU: no MFU, never a guess
    assert M.achieved_tflops(None, 10.0) is None
    assert M.joules_per_token(100.0, 1000) == pytest.approx(0.1)
    assert M.joules_per_token(None, 1000) is None
    assert M.cv(10.0, 0.1) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "name,precision,expected",
    [
        ("NVIDIA H200", "bf16-mixed", 989.4),
        ("NVIDIA H200 NVL", "bf16-mixed", 835.5),
        ("NVIDIA H100 80GB HBM3", "fp16-mixed", 989.4),
        ("NVIDIA H100 PCIe", "bf16-mixed", 756.5),
        ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
        ("NVIDIA A100-SXM4-80GB", "fp32", 19.5),
        ("Tesla V100-DGXS-16GB", "fp16-mixed", 125.0),
        ("Tesla V100-SXM2-16GB", "bf16-mixed", None),  # no bf16 tensor cores on Volta
        ("Tesla V100-PCIE-16GB", "tf32", 14.0),  # no TF32 on Volta: fp32 math
        ("Tesla T4", "fp16-mixed", 65.0),
        ("Some Future GPU", "bf16-mixed", None),
        (None, "bf16-mixed", None),
    ],
)
def test_peak_table(name, precision, expected):
    assert peak_tflops(name, precision) == expected


def test_every_peak_entry_cites_a_source():
    from sweep.trial.hardware import PEAKS

    for _, peak in PEAKS:
        assert peak.source.startswith("https://"), peak.label
    assert gpu_peak("NVIDIA H200").label == "H200 SXM"


def test_nvml_summary_from_replayed_samples():
    samples = [
        {
            "gpu_util": 90,
            "mem_util": 40,
            "used_bytes": 10 * 2**30,
            "total_bytes": 143771 * 2**20,  # the H200's, NVML's count
            "power_w": 500.0,
            "sm_mhz": 1980,
            "temp_c": 50,
        },
        {
            "gpu_util": 100,
            "mem_util": 60,
            "used_bytes": 12 * 2**30,
            "power_w": 600.0,
            "sm_mhz": 1900,
            "temp_c": 55,
        },
        {
            "gpu_util": None,
            "mem_util": None,
            "used_bytes": None,
            "power_w": None,
            "sm_mhz": None,
            "temp_c": None,
        },  # a failed reading is skipped, not a zero
    ]
    s = summarize_nvml(samples, energy_j=1100.0, throttle_mask=0x1 | 0x4)
    assert s["gpu_util_pct_mean"] == 95
    assert s["power_w_mean"] == 550.0
    assert s["nvml_peak_used_gib"] == 12.0
    assert s["nvml_total_gib"] == pytest.approx(140.401, abs=1e-3)
    assert s["temperature_c_max"] == 55
    assert s["energy_j"] == 1100.0
    assert s["throttle_reasons"] == "sw_power_cap"  # gpu_idle is not a throttle
    assert throttle_names(0x8 | 0x40) == ["hw_slowdown", "hw_thermal_slowdown"]
    empty = summarize_nvml([], None, 0)
    assert empty["gpu_util_pct_mean"] is None and empty["nvml_peak_used_gib"] is None
    assert empty["nvml_total_gib"] is None


def test_union_of_kernel_intervals_counts_overlap_once():
    from sweep.trial.metrics import union_ms

    assert union_ms([]) == 0.0
    assert union_ms([(0.0, 2.0)]) == 2.0
    # two streams overlapping on [1, 2]: 3 ms covered, not the 4 ms their durations sum to
    assert union_ms([(1.0, 3.0), (0.0, 2.0)]) == pytest.approx(3.0)
    # one inside another, a gap, and touching ends
    assert union_ms([(0.0, 10.0), (2.0, 3.0), (12.0, 13.0), (13.0, 15.0)]) == pytest.approx(13.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        union_ms([(2.0, 1.0)])


def test_launch_bound_share_is_the_idle_part_of_the_wall_time():
    from sweep.trial.metrics import launch_bound_pct

    # 10 ms step, kernels busy on [0,2] and [1,3] (3 ms of union) and [6,7]: 4 ms busy -> 60%
    assert launch_bound_pct([(0.0, 2.0), (1.0, 3.0), (6.0, 7.0)], 10.0) == pytest.approx(60.0)
    # back-to-back kernels filling the step: not launch-bound; a hair over the wall clamps to 0
    assert launch_bound_pct([(0.0, 5.0), (5.0, 10.0)], 10.0) == pytest.approx(0.0)
    assert launch_bound_pct([(0.0, 10.02)], 10.0) == 0.0
    assert launch_bound_pct([], 4.0) == 100.0
    with pytest.raises(ValueError, match="wall time"):
        launch_bound_pct([(0.0, 1.0)], 0.0)


def test_host_bound_reads_the_launch_share_first_then_nvml():
    from sweep.results.trust import host_bound

    # the old one-argument call keeps working
    assert host_bound(85.0) is True and host_bound(95.0) is False
    assert host_bound(None) is None and host_bound(float("nan")) is None
    # launch_bound_pct wins where present, whatever NVML said
    assert host_bound(99.0, launch_bound_pct=35.0) is True
    assert host_bound(50.0, launch_bound_pct=4.0) is False
    # a row's metrics
    assert host_bound({"gpu_util_pct_mean": 99.0, "launch_bound_pct": 12.0}) is True
    assert host_bound({"gpu_util_pct_mean": 70.0, "launch_bound_pct": 10.0}) is False
    assert host_bound({"gpu_util_pct_mean": 70.0, "launch_bound_pct": None}) is True
    assert host_bound({"gpu_util_pct_mean": 70.0, "launch_bound_pct": float("nan")}) is True
    assert host_bound({"loss_last": 0.7}) is None


def test_summary_counts_host_bound_by_the_launch_share_where_profiled():
    from sweep.plan.config import TrialConfig
    from sweep.report import format_summary
    from sweep.results.frame import trials_frame
    from sweep.results.record import Trial

    rows = [(1, 99.0, 40.0), (2, 50.0, None), (4, 60.0, 2.0)]  # batch, NVML busy, launch share
    trials = [
        Trial(
            config=TrialConfig(batch_size=b).to_dict(),
            status="ok",
            metrics={"sequences_per_s": 1.0, "gpu_util_pct_mean": u, "launch_bound_pct": lb},
        )
        for b, u, lb in rows
    ]
    text = format_summary(trials_frame(trials))
    # batch 1 by its launch share despite 99% busy, batch 2 by NVML; batch 4's 2% is GPU-bound
    assert "2 configuration(s) kept the GPU busy under 90%" in text
    assert "launch_bound_pct" in text


def test_every_trial_precision_has_a_peak_on_a_known_gpu():
    # a precision added to TrialConfig without a peak failed every trial of it on the H200
    # ("precision: 'bf16-true' has no peak", 2026-12-06)
    from sweep.plan.config import PRECISIONS
    from sweep.trial.hardware import peak_tflops

    for precision in PRECISIONS:
        assert peak_tflops("NVIDIA H200", precision) > 0, precision
    assert peak_tflops("NVIDIA H200", "bf16-true") == peak_tflops("NVIDIA H200", "bf16-mixed")
