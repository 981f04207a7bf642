"""The private-pool count behind the peak memory of compile modes that replay CUDA graphs: the
allocator shows a replayed cudagraph tree's tensors as free, so the product adds what the
graphs' pools reserve (the GPU test in tests/test_gpu.py runs the trial again capped to that
figure, in a fresh process: the helper for that is tested here on the CPU)."""

from sweep.trial.harness import graphs_peak_bytes, private_pool_bytes

MIB = 2**20


def seg(size_mib, pool=(0, 0), device=0):
    return {"total_size": size_mib * MIB, "segment_pool_id": pool, "device": device}


def test_only_private_pools_on_the_trials_device_count():
    snapshot = [
        seg(512),  # the default pool: eager tensors, counted by the allocator's own peak
        seg(20, pool=(0, 1)),  # a torch.cuda.graph pool
        seg(2, pool=(0, 1)),
        seg(300, pool=(0, 3)),  # a cudagraph tree's pool
        seg(64, pool=(0, 3), device=1),  # another GPU's
    ]
    assert private_pool_bytes(snapshot, device=0) == 322 * MIB
    assert private_pool_bytes(snapshot, device=1) == 64 * MIB


def test_no_private_pool_adds_nothing():
    assert private_pool_bytes([seg(512), seg(2)], device=0) == 0
    assert private_pool_bytes([], device=0) == 0


def test_graphs_peak_is_the_window_plus_pools_unless_the_warm_up_held_more():
    # bert-mini b32 s128 reduce-overhead on the H200 (2026-12-03): warm-up 0.320 GiB, window
    # 0.126 + pools 0.236
    assert graphs_peak_bytes(320 * MIB, 126 * MIB, 236 * MIB) == 362 * MIB
    assert graphs_peak_bytes(900 * MIB, 126 * MIB, 236 * MIB) == 900 * MIB
    assert graphs_peak_bytes(320 * MIB, 126 * MIB, 0) == 320 * MIB


def test_trial_in_child_returns_the_childs_record_or_what_went_wrong():
    from benchmarks.compile_pool_memory import trial_in_child

    cfg = dict(model="bert-tiny", batch_size=2, seq_len=16, device="cpu", warmup_steps=1, steps=2)
    rec = trial_in_child(cfg, timeout_s=120)
    assert rec["status"] == "ok", rec
    assert rec["metrics"]["step_time_ms_p50"] > 0 and rec["metrics"]["tokens_per_s"] > 0
    bad = trial_in_child({**cfg, "batch_size": "two"}, timeout_s=120)
    assert "status" not in bad and "batch_size" in bad["error"], bad
