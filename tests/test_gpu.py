"""Truth checks on a real GPU (marked `gpu`: skipped without CUDA; `make test-gpu` runs them)."""

import os

import pytest

from sweep.plan.config import TrialConfig
from sweep.trial.hardware import peak_tflops
from sweep.trial.run import run_trial

pytestmark = pytest.mark.gpu

BASE = dict(
    model="bert-base-uncased",
    batch_size=32,
    seq_len=128,
    precision="bf16-mixed",
    warmup_steps=3,
    steps=20,
    device="cuda",
)


@pytest.fixture(scope="module")
def bf16_trial():
    rec = run_trial(TrialConfig(**BASE))
    assert rec.status == "ok", rec.error
    return rec


def test_gpu_record_is_complete_and_consistent(bf16_trial):
    m, env = bf16_trial.metrics, bf16_trial.env
    assert env["gpu_name"] and env["gpu_uuid"].startswith("GPU-")
    assert env["driver_version"] and env["cuda_version"] and env["compute_capability"]
    assert m["peak_tflops"] == peak_tflops(env["gpu_name"], "bf16-mixed")
    if m["peak_tflops"] is not None:
        assert 0 < m["mfu"] < 1
    # the split adds up: forward + backward + optimizer + the gap between steps = the step. Each
    # step's split is exact (test_gpu_event_marks_split_each_step_exactly); the record keeps
    # medians, which need not add: 3.0% apart on an H100 (2026-12-07) for this launch-bound step,
    # whose step times spread. A phase missing from the split would be far more than 5%.
    parts = m["forward_ms_p50"] + m["backward_ms_p50"] + m["optimizer_ms_p50"] + m["other_ms_p50"]
    assert parts == pytest.approx(m["step_time_ms_p50"], rel=0.05)
    # throughput is from the whole step, the optimizer included
    assert m["sequences_per_s"] == pytest.approx(32 * 1000 / m["step_time_ms_p50"])
    assert m["optimizer_ms_p50"] > 0


def test_gpu_event_marks_split_each_step_exactly():
    """The CUDA events the native loop puts at each phase's end, read raw: in order, every phase
    positive, and each step's phases add up to its step time (what the record's medians
    summarise)."""
    from sweep.trial.harness import run_native
    from sweep.trial.metrics import phase_split_ms
    from sweep.trial.workload import build_workload

    w = build_workload(TrialConfig(**{**BASE, "steps": 12}), "cuda")
    raw = run_native(w)
    steps, phases = phase_split_ms(raw.rows_ms, raw.phase_names)
    assert len(steps) == 12
    for i, step in enumerate(steps):
        split = [phases[name][i] for name in (*raw.phase_names, "other")]
        assert all(v > 0 for v in split[:-1]) and split[-1] >= 0, split
        assert sum(split) == pytest.approx(step, rel=1e-9, abs=1e-6)
    print(
        "step ms "
        + ", ".join(f"{v:.2f}" for v in steps)
        + f"; spread {min(steps):.2f}-{max(steps):.2f}"
    )


def test_gpu_memory_and_nvml(bf16_trial):
    m = bf16_trial.metrics
    assert 0 < m["peak_allocated_gib"] <= m["peak_reserved_gib"] < m["device_total_gib"]
    # NVML sees the allocator's reserve plus the CUDA context: above torch's peak, not below
    assert m["nvml_peak_used_gib"] >= m["peak_reserved_gib"]
    assert m["nvml_samples"] >= 1
    # NVML's total holds the driver's own region beside CUDA's total (0.60 GiB on the H200,
    # 0.46 on the H100): more than CUDA's, by less than a card's context would take
    assert 0 < m["nvml_total_gib"] - m["device_total_gib"] < 2.0
    assert m["energy_j"] > 0 and m["joules_per_token"] > 0
    assert m["power_w_mean"] > 0 and m["sm_clock_mhz_mean"] > 0
    assert bf16_trial.env["power_limit_w"] > 0


def test_forward_grows_with_the_batch_and_events_agree_with_the_wall_clock():
    # The original project's host timers showed a flat forward from batch 1 to 256. Below a
    # few hundred sequences bert-base's forward is bound by kernel launches on the H200's host
    # (about 10 ms at batch 64 and 20 ms at 256, measured 2026-11-29), so compare batches where
    # the GPU's own work dominates.
    mid = run_trial(TrialConfig(**{**BASE, "batch_size": 256}))
    large = run_trial(TrialConfig(**{**BASE, "batch_size": 1024}))
    assert mid.status == large.status == "ok"
    assert large.metrics["forward_ms_p50"] > 2.0 * mid.metrics["forward_ms_p50"]
    # CUDA-event step times add up to the host's wall time of the measured steps
    m = large.metrics
    per_step_wall_ms = m["measure_s"] * 1000 / m["steps_measured"]
    assert m["step_time_ms_mean"] == pytest.approx(per_step_wall_ms, rel=0.03)


@pytest.mark.parametrize(
    "changes",
    [
        {"precision": "fp16-mixed"},
        {"precision": "tf32"},
        {"precision": "fp32"},
        {"harness": "lightning"},
        {"compile": True},
        {"attention": "eager"},
        {"optimizer": "adamw"},
        {"gradient_checkpointing": True},
        {"mode": "inference"},
        {"model": "gpt2", "task": "causal-lm", "seq_len": 1024, "batch_size": 8},
        {"model": "smollm2-135m", "seq_len": 512, "batch_size": 8},
    ],
)
def test_gpu_options_run(changes):
    rec = run_trial(TrialConfig(**{**BASE, "steps": 5, **changes}))
    assert rec.status == "ok", rec.error
    assert rec.metrics["tokens_per_s"] > 0


def test_real_oom_is_a_record_and_memory_is_released():
    import torch

    rec = run_trial(
        TrialConfig(
            **{
                **BASE,
                "model": "bert-large-uncased",
                "seq_len": 512,
                "batch_size": 8192,
                "steps": 2,
            }
        )
    )
    assert rec.status == "oom", (rec.status, rec.error)
    assert "out of memory" in rec.error.lower()
    assert torch.cuda.memory_allocated() < 2**30  # the failed trial's tensors are gone
    assert run_trial(TrialConfig(**{**BASE, "steps": 3})).status == "ok"


def test_isolated_trials_each_start_their_own_cuda_context():
    # The engine's default: each trial is a process forked from a fork server that imported
    # torch without initialising CUDA. If the server had touched CUDA, the forked trial would
    # fail ("Cannot re-initialize CUDA in forked subprocess"); if trials shared a process, the
    # second would inherit the first's allocator cache and report its peak.
    from sweep.engine.forkserver import run_in_child

    cfg = TrialConfig(**{**BASE, "steps": 5}).to_dict()
    first = run_in_child("sweep.trial.run:run_trial", cfg, 300)
    second = run_in_child("sweep.trial.run:run_trial", cfg, 300)
    assert first.status == second.status == "ok", (first.error, second.error)
    assert first.env["gpu_uuid"] == second.env["gpu_uuid"]
    # a fresh process each time: the same peak, not one grown by the other's leftovers
    assert second.metrics["peak_reserved_gib"] == pytest.approx(
        first.metrics["peak_reserved_gib"], rel=0.05
    )


# CUDA-graph steps, compile modes and the profiled step (issue 11). Acceptance tests for the
# graph step: the same losses as the eager step, the split measured, memory from the pool.

GRAPH = {**BASE, "cuda_graph": True, "steps": 10}
# max-autotune's warm-up takes minutes per trial (130 s for bert-mini on the H200): opt in.
SLOW = pytest.mark.skipif(
    os.environ.get("TSWEEP_GPU_SLOW") != "1", reason="max-autotune: set TSWEEP_GPU_SLOW=1"
)


def _losses_eager_and_graphed(changes):
    import torch

    from sweep.trial.graph import GraphStep
    from sweep.trial.workload import build_workload, train_step

    cfg = TrialConfig(**{**BASE, "cuda_graph": True, "warmup_steps": 3, "steps": 5, **changes})
    # both from the same seed, the same (capturable) optimizer, dropout off: the same arithmetic
    eager = build_workload(cfg, "cuda")
    eager.model.train(False)
    eager_losses = torch.stack([train_step(eager) for _ in range(3 + 5)][3:]).float().cpu()
    eager_params = [p.detach().float().cpu() for p in eager.model.parameters()]
    del eager
    torch.cuda.empty_cache()

    w = build_workload(cfg, "cuda")
    w.model.train(False)
    step = GraphStep(w)
    step.warm_up(3)
    step.capture()
    assert step.names == ("forward", "backward", "optimizer")
    captured = [p.detach().clone() for p in w.model.parameters()]
    graphed_losses = torch.stack([step.replay() for _ in range(5)]).float().cpu()
    moved = sum(
        not torch.equal(a, p.detach()) for a, p in zip(captured, w.model.parameters(), strict=True)
    )
    graphed_params = [p.detach().float().cpu() for p in w.model.parameters()]
    return eager_losses, graphed_losses, moved, len(captured), eager_params, graphed_params


@pytest.mark.parametrize(
    "changes",
    [{}, {"optimizer": "adamw"}, {"model": "gpt2", "task": "causal-lm", "seq_len": 512}],
)
def test_graphed_steps_compute_what_eager_steps_compute(changes):
    import torch

    eager, graphed, moved, n_params, eager_p, graphed_p = _losses_eager_and_graphed(changes)
    print("eager", eager.tolist(), "graphed", graphed.tolist())
    assert torch.isfinite(graphed).all()
    # bf16 autocast: agreement to bf16's resolution (8 bits of mantissa), step by step
    assert torch.allclose(graphed, eager, rtol=2e-2, atol=1e-2), (eager, graphed)
    assert not torch.equal(graphed[0], graphed[-1])  # the steps train: the loss moves
    # the replayed optimizer updates the parameters (nearly all of them; pooler/unused aside)
    assert moved >= 0.9 * n_params, (moved, n_params)
    for a, b in zip(eager_p, graphed_p, strict=True):
        assert torch.allclose(a, b, rtol=2e-2, atol=2e-4)


@pytest.fixture(scope="module")
def graphed_and_eager():
    graphed = run_trial(TrialConfig(**GRAPH))
    eager = run_trial(TrialConfig(**{**GRAPH, "cuda_graph": False}))
    assert graphed.status == "ok", graphed.error
    assert eager.status == "ok", eager.error
    return graphed, eager


def test_graph_trial_record(graphed_and_eager):
    graphed, eager = graphed_and_eager
    g, e = graphed.metrics, eager.metrics
    print(
        f"step eager {e['step_time_ms_p50']:.2f} ms graphed {g['step_time_ms_p50']:.2f} ms; "
        f"capture {g['graph_capture_s']:.2f} s; launch-bound eager {e['launch_bound_pct']:.1f}% "
        f"graphed {g['launch_bound_pct']:.1f}%; peak alloc eager {e['peak_allocated_gib']:.2f} "
        f"graphed {g['peak_allocated_gib']:.2f} reserved {g['peak_reserved_gib']:.2f} GiB"
    )
    assert g["graph_captured"] == 1 and e["graph_captured"] == 0
    assert g["graph_capture_s"] > 0 and e["graph_capture_s"] is None
    assert g["steps_measured"] == 10
    # each phase timed by events between replays, and the split adds up to the step
    for phase in ("forward", "backward", "optimizer"):
        assert g[f"{phase}_ms_p50"] > 0
    parts = g["forward_ms_p50"] + g["backward_ms_p50"] + g["optimizer_ms_p50"] + g["other_ms_p50"]
    assert parts == pytest.approx(g["step_time_ms_p50"], rel=0.02)  # replays: little spread
    # the same work: FLOPs counted equal, throughput from the whole step
    assert g["flops_per_step"] == e["flops_per_step"]
    assert g["sequences_per_s"] == pytest.approx(32 * 1000 / g["step_time_ms_p50"])
    # memory from the graph's pool: counted by torch's allocator, about the eager step's peak
    assert 0.7 * e["peak_allocated_gib"] <= g["peak_allocated_gib"] <= 1.3 * e["peak_allocated_gib"]
    assert g["peak_allocated_gib"] <= g["peak_reserved_gib"] < g["device_total_gib"]
    assert g["nvml_peak_used_gib"] >= g["peak_reserved_gib"]


def test_profiled_step_metrics(graphed_and_eager):
    graphed, eager = graphed_and_eager
    for rec in (eager, graphed):
        m = rec.metrics
        print(
            f"cuda_graph={rec.config['cuda_graph']}: {m['kernels_per_step']} kernels, "
            f"{m['gpu_kernel_ms_per_step']:.2f} ms of kernels, {m['launch_bound_pct']:.1f}% "
            f"launch-bound, profile {m['profile_s']:.3f} s"
        )
        assert m["kernels_per_step"] > 50  # bert-base's step is hundreds of kernels
        # one stream: the kernels' sum cannot pass the step's time
        assert 0 < m["gpu_kernel_ms_per_step"] <= 1.1 * m["step_time_ms_p90"]
        assert 0 <= m["launch_bound_pct"] <= 100
        assert m["profile_s"] < 0.3  # the profiled step's budget per trial (issue 11)
        # idle share of the measured step: the kernels' time against the median step
        busy = min(1.0, m["gpu_kernel_ms_per_step"] / m["step_time_ms_p50"])
        assert m["launch_bound_pct"] == pytest.approx(100 * (1 - busy), abs=5.0)
        assert m["profiled_step_ms"] > 0
    # the graph removes launch gaps (H200 2026-12-02: 80.5% -> 29.8% against the profiled wall)
    assert graphed.metrics["launch_bound_pct"] < eager.metrics["launch_bound_pct"]
    # CUPTI sees the kernels inside the graphs too: the same order of work
    assert graphed.metrics["kernels_per_step"] >= 0.5 * eager.metrics["kernels_per_step"]
    # the same attention kernels: a graphed step on the math path (suspected on the H200,
    # 2026-12-01: 0.63x and 2.4x the memory at seq 512 batch 32) is not the eager step's work
    assert eager.metrics["fused_attention_kernels_per_step"] > 0
    assert (
        graphed.metrics["fused_attention_kernels_per_step"]
        == eager.metrics["fused_attention_kernels_per_step"]
    )
    off = run_trial(TrialConfig(**{**BASE, "steps": 3, "profile_step": False}))
    assert off.status == "ok" and off.metrics.get("launch_bound_pct") is None


def test_graphed_inference_captures_the_forward():
    rec = run_trial(TrialConfig(**{**GRAPH, "mode": "inference"}))
    assert rec.status == "ok", rec.error
    m = rec.metrics
    assert m["graph_captured"] == 1 and m["forward_ms_p50"] > 0
    assert m.get("backward_ms_p50") is None and m.get("optimizer_ms_p50") is None
    assert m["forward_ms_p50"] <= m["step_time_ms_p50"] * 1.02


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "adamw"},
        {"precision": "fp32"},
        {"model": "gpt2", "task": "causal-lm", "seq_len": 1024, "batch_size": 8},
        {"model": "smollm2-135m", "seq_len": 512, "batch_size": 8},
        {"compile": True},
        pytest.param({"compile": "max-autotune-no-cudagraphs", "model": "bert-mini"}, marks=SLOW),
    ],
)
def test_graph_options_run(changes):
    rec = run_trial(TrialConfig(**{**GRAPH, "steps": 5, **changes}))
    assert rec.status == "ok", rec.error
    assert rec.metrics["graph_captured"] == 1 and rec.metrics["tokens_per_s"] > 0
    if changes.get("compile") and changes.get("precision", "bf16-mixed") != "fp32":
        # compiled and graphed, attention stays fused (0 per step on the H200, 2026-12-02,
        # before the captured batch kept its mask for compiled models)
        assert rec.metrics["fused_attention_kernels_per_step"] > 0, rec.metrics


@pytest.mark.parametrize(
    "changes,why",
    [
        ({"precision": "fp16-mixed"}, "grad scaler"),
        ({"harness": "lightning"}, "Lightning"),
        ({"compile": "reduce-overhead"}, "reduce-overhead"),
    ],
)
def test_graph_unsupported_on_the_gpu(changes, why):
    rec = run_trial(TrialConfig(**{**GRAPH, "steps": 3, **changes}))
    assert rec.status == "unsupported" and why in rec.error and rec.error.startswith("cuda_graph:")


def test_graph_with_eager_attention_runs_or_says_what_raised():
    """Failed as an ok-only test on the H200 (2026-12-01, twice; its message was lost to a cut
    run): what raised must be in the row, as for any capture that raises (issue 11)."""
    rec = run_trial(TrialConfig(**{**GRAPH, "steps": 3, "attention": "eager"}))
    print(rec.status, rec.error)
    if rec.status != "ok":
        assert rec.status == "unsupported", (rec.status, rec.error)
        assert rec.error.startswith("cuda_graph: capture failed:")
    else:
        assert rec.metrics["graph_captured"] == 1


def test_graph_with_gradient_checkpointing_runs_or_says_what_raised():
    rec = run_trial(TrialConfig(**{**GRAPH, "steps": 3, "gradient_checkpointing": True}))
    print(rec.status, rec.error)
    if rec.status != "ok":
        assert rec.status == "unsupported", (rec.status, rec.error)
        assert rec.error.startswith("cuda_graph: capture failed:")
    # the process goes on: the next trial runs normally
    assert run_trial(TrialConfig(**{**BASE, "steps": 3})).status == "ok"


@pytest.mark.parametrize(
    "compile_",
    [
        True,
        "reduce-overhead",
        pytest.param("max-autotune", marks=SLOW),
        pytest.param("max-autotune-no-cudagraphs", marks=SLOW),
    ],
)
@pytest.mark.parametrize("mode", ["train", "inference"])
def test_compile_modes_run(compile_, mode):
    rec = run_trial(
        TrialConfig(**{**BASE, "model": "bert-mini", "steps": 5, "compile": compile_, "mode": mode})
    )
    assert rec.status == "ok", rec.error
    m = rec.metrics
    print(
        f"compile={compile_} {mode}: warm-up {m['warmup_s']:.1f} s, {m['step_time_ms_p50']:.2f} ms"
    )
    assert m["warmup_s"] > 0 and m["step_time_ms_p50"] > 0
    if mode == "train":
        assert m["loss_first"] is not None and m["loss_last"] is not None


def test_compiled_graphs_report_their_pools_memory():
    """compile reduce-overhead records cudagraph trees in the warm-up and replays them from a
    private pool the allocator is not asked for again: the peak the product reports must be
    enough memory to run the trial. On the H200 (2026-12-02) bert-base seq 128 batch 64 reported
    1.23 GiB against 4.26 for compile default, with the pool missed. The check is physical: the
    same trial again with the allocator capped to the reported peak x1.1 + 128 MiB must run (an
    under-count runs out of memory), and the figure cannot exceed what the allocator reserved.
    (A first version compared the peak with compile default's, both trials in this pytest
    process: 0.74 against 0.99 GiB at bert-mini, failed twice on the H200, 2026-12-02. In fresh
    processes the two measure 0.362 and 0.352 GiB, benchmarks/compile_pool_memory.py, 2026-12-03:
    the in-process figures carried what earlier trials of the session had left (the product runs
    each trial in a fresh process; this test now does too).)"""
    from benchmarks.compile_pool_memory import trial_in_child

    cfg = {**BASE, "batch_size": 64, "steps": 5, "compile": "reduce-overhead"}
    free = trial_in_child(cfg)
    assert free.get("status") == "ok", free["error"]
    peak = free["metrics"]["peak_allocated_gib"]
    assert peak <= free["metrics"]["peak_reserved_gib"] + 1e-6
    capped = trial_in_child(cfg, peak * 1.1 + 0.125)
    print(
        f"reduce-overhead bert-base b64 s128: reported peak {peak:.3f} GiB; capped to "
        f"{peak * 1.1 + 0.125:.3f} GiB: {capped.get('status')}"
    )
    assert capped.get("status") == "ok", (peak, capped["error"])


def test_a_capped_card_is_capped_again_after_the_warm_up():
    """capacity_gb's second cap (sweep/trial/capacity.py): after the warm-up the process holds
    more outside the allocator than at CUDA's start (the kernels the step loaded), the cap shrinks
    by that much, and the measured steps' reserved peak stays under it."""
    rec = run_trial(
        TrialConfig(
            **{
                **BASE,
                "model": "smollm2-135m",
                "task": "causal-lm",
                "seq_len": 512,
                "batch_size": 4,
                "steps": 3,
                "capacity_gb": 16,
            }
        )
    )
    assert rec.status == "ok", rec.error
    m = rec.metrics
    print(
        f"16 GB on {rec.env['gpu_name']}: context at start {m['cuda_context_gib']:.3f} GiB, "
        f"outside the allocator after the warm-up {m['outside_allocator_gib']:.3f} GiB, cap "
        f"{m['capacity_cap_gib']:.3f} GiB, reserved peak {m['peak_reserved_gib']:.3f} GiB"
    )
    assert m["outside_allocator_gib"] >= m["cuda_context_gib"] > 0
    first_cap = 16 - m["driver_reserved_gib"] - m["cuda_context_gib"]
    shrink = first_cap - m["capacity_cap_gib"]
    assert shrink == pytest.approx(m["outside_allocator_gib"] - m["cuda_context_gib"], abs=1e-3)
    assert m["peak_reserved_gib"] <= m["capacity_cap_gib"]


def test_expandable_segments_are_on_for_the_trial_and_off_after_it():
    """allocator: expandable (sweep/trial/allocator.py): the allocator says expandable segments
    are on while the trial runs, reserved stays close to allocated, and the process's next trial
    starts from the default again."""
    from sweep.trial import allocator

    cfg = {**BASE, "model": "smollm2-135m", "task": "causal-lm", "seq_len": 512, "batch_size": 4}
    rec = run_trial(TrialConfig(**cfg, allocator="expandable"))
    assert rec.status == "ok", rec.error
    assert "expandable_segments:True" in rec.env["cuda_alloc_conf"]
    m = rec.metrics
    print(
        f"expandable on {rec.env['gpu_name']}: peak allocated {m['peak_allocated_gib']:.3f}, "
        f"reserved {m['peak_reserved_gib']:.3f} GiB; settings {rec.env['cuda_alloc_conf']!r}"
    )
    now = allocator.settings()
    if now is not None:
        assert "expandable_segments:True" not in now
    assert m["peak_reserved_gib"] - m["peak_allocated_gib"] < 0.5


# Run in a fresh process: in the test session's own process, segments that earlier tests left
# partly in use keep free room that empty_cache cannot return, and two new blocks fit there
# without a new segment (an H100, 2026-12-07: 0 new segments where 2 were expected).
_ALLOCATOR_PROBE = """
import json, torch
from sweep.plan.config import TrialConfig
from sweep.trial import allocator

def new_segments():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = {s["address"] for s in torch.cuda.memory_snapshot()}
    a = torch.empty(100 * 2**20, dtype=torch.uint8, device="cuda")
    b = torch.empty(100 * 2**20, dtype=torch.uint8, device="cuda")
    new = [s for s in torch.cuda.memory_snapshot() if s["address"] not in before]
    out = [s.get("is_expandable") for s in new]
    del a, b
    return out

cfg = TrialConfig(model="bert-base-uncased", device="cuda", allocator="expandable")
torch.cuda.init()
result = {"check": allocator.check(cfg, "cuda"), "default": new_segments()}
allocator.expand(cfg, "cuda", {}, {})
result["expandable"] = new_segments()
allocator.restore(cfg)
result["settings_after"] = allocator.settings()
result["after"] = new_segments()
print("RESULT " + json.dumps(result))
"""


def test_the_allocator_setting_takes_effect_and_is_undone():
    """allocator.expand / restore change the running allocator, whichever call this torch has,
    in a fresh process: two 100 MiB blocks take two ordinary segments by default, expandable
    segments (one, grown in place) once expanded, and ordinary ones again after restore (the
    allocator skips its expandable blocks while the setting is off)."""
    import json
    import subprocess
    import sys

    drop = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")  # the process starts at the default
    env = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [sys.executable, "-c", _ALLOCATOR_PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    print(f"allocator probe: {r}")
    assert r["check"] is None
    assert len(r["default"]) == 2 and not any(r["default"]), r
    assert len(r["expandable"]) == 1, r  # one segment, grown in place for the second block
    assert all(flag in (True, None) for flag in r["expandable"]), r
    if r["settings_after"] is not None:  # what the allocator says
        assert "expandable_segments:True" not in r["settings_after"], r
    assert len(r["after"]) == 2 and not any(r["after"]), r
