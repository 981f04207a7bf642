"""The machine line every benchmark prints with its figures."""

from __future__ import annotations

import platform


def machine() -> str:
    from sweep.trial.env import cpu_model, software

    sw = software()
    parts = [
        f"host {sw['hostname']}",
        f"python {sw['python_version']}",
        f"torch {sw['torch_version']}",
        f"transformers {sw['transformers_version']}",
        f"lightning {sw['lightning_version']}",
        f"ray {sw['ray_version']}",
        f"commit {sw['git_commit']}",
    ]
    try:
        import torch

        if torch.cuda.is_available():
            from sweep.trial.env import gpu_facts

            g = gpu_facts(0)
            parts.insert(
                0,
                f"GPU {g['gpu_name']} ({g['gpu_memory_total_gib']:.0f} GiB, "
                f"driver {g.get('driver_version')}, CUDA {g['cuda_version']}, "
                f"power limit {g.get('power_limit_w')} W)",
            )
        else:
            parts.insert(0, f"CPU {cpu_model()} ({platform.machine()}), no GPU")
    except ImportError:
        parts.insert(0, f"CPU {cpu_model()}")
    return "; ".join(parts)
