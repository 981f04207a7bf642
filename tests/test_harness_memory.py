"""The private-pool count behind the peak memory of compile modes that replay CUDA graphs: the
allocator shows a replayed cudagraph tree's tensors as free, so the product adds what the
graphs' pools reserve (the GPU test in tests/test_gpu.py checks it against compile default)."""

from sweep.trial.harness import private_pool_bytes

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
