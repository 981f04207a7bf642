"""Shared fixtures. GPU tests carry @pytest.mark.gpu and are skipped where CUDA is absent."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `make test-gpu` on a GPU host)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session: 2 logical CPUs, no dashboard, no
    worker pre-import (the fake trials need no torch; the real ones import it themselves)."""
    ray = pytest.importorskip("ray")
    from cluster.ray_cluster import connect

    connect(num_cpus=2)
    yield ray
    ray.shutdown()
