# The image every node of a transformers-sweep Ray cluster runs (cluster.yaml, docker.image), and
# the one that serves the web app (README, "The web app in Docker"):
#   docker run -p 7860:7860 -v "$PWD:/data" IMAGE \
#       python -m ui --db /data/results.db --host 0.0.0.0 --port 7860 --auth user:password
# .dockerignore keeps the virtualenv, .git, results databases and caches out of the context.
#
# Base: NVIDIA's NGC PyTorch container. It ships a CUDA build of torch matched to its CUDA,
# cuDNN and NCCL, and NVIDIA apex (its FusedAdam is what the "apex-fused-adam" optimizer uses; the
# PyPI package named "apex" is an unrelated project and is never installed).
# Release notes with the versions inside each tag:
# https://docs.nvidia.com/deeplearning/frameworks/pytorch-release-notes/
# 25.01 ships Python 3.12 and supports V100 (sm_70) as well as A100, H100 and H200. From 25.03
# on, NGC images pin their packages in /etc/pip/constraint.txt: a newer tag may need that file
# relaxed for transformers==5.17.0 (the build below fails loudly if so, rather than drifting).
ARG NGC_TAG=25.01
FROM nvcr.io/nvidia/pytorch:${NGC_TAG}-py3

# The driver and every worker must run the same Ray (it refuses to mix versions).
ARG RAY_VERSION=2.60.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # offline by design: no model hub, no telemetry
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAY_USAGE_STATS_ENABLED=0

# Ray's cluster launcher syncs files with rsync and runs commands through bash.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        rsync openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/transformers-sweep

# Dependencies first (a layer that changes only when pyproject.toml does). The image's own torch
# is kept: the "trial" extra asks for torch>=2.4, which the NGC build satisfies, so pip leaves it.
COPY pyproject.toml README.md ./
RUN mkdir -p sweep/analysis cluster ui \
    && touch sweep/__init__.py cluster/__init__.py sweep/analysis/__init__.py ui/__init__.py \
    && pip install "ray[tune]==${RAY_VERSION}" -e ".[trial,engine,ui]" \
    && python -c "import torch, ray; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

# The project itself. On a cluster, file_mounts put the current checkout at
# ~/transformers-sweep and setup_commands re-install it (--no-deps) over this copy.
COPY sweep ./sweep
COPY cluster ./cluster
COPY ui ./ui
# The import check fails the build if the base image has lost apex: then the cluster would
# silently measure another optimizer than the one a sweep asks for.
RUN pip install --no-deps -e . \
    && python -c "import sweep.engine.run, cluster.ray_cluster; from apex.optimizers import FusedAdam" \
    && python -c "import ui.app, sweep.analysis.sources"

# python -m ui listens here when given --port 7860 (its default is the first free port from 7860)
EXPOSE 7860

CMD ["python", "-m", "sweep", "--help"]
