"""Imported once by each worker's fork server (sweep/engine/forkserver.py) so that every trial
process starts with torch, transformers, Lightning and the trial's own modules already loaded.

Nothing here touches CUDA: a process that has initialised CUDA cannot be forked safely.
"""

from __future__ import annotations

import importlib
import logging
import os

# If anything asks whether CUDA is there, answer through NVML rather than cuInit: a process that
# initialised the CUDA driver cannot be forked into working trial processes.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

log = logging.getLogger(__name__)

MODULES = (
    "torch",
    "torch.utils.flop_counter",
    "transformers",
    "transformers.modeling_utils",
    # the model code of the catalog's architectures (transformers imports it lazily)
    "transformers.models.bert.modeling_bert",
    "transformers.models.roberta.modeling_roberta",
    "transformers.models.distilbert.modeling_distilbert",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.llama.modeling_llama",
    "transformers.models.qwen2.modeling_qwen2",
    "pytorch_lightning",
    "pynvml",
    "sweep.trial.run",
    "sweep.trial.workload",
    "sweep.trial.harness",
    "sweep.trial.env",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except Exception as exc:  # a missing optional piece: the trial itself will say what failed
        log.debug("preload of %s failed: %s", _name, exc)

# The node's software versions and commit, once, inherited by every trial process forked from here.
try:
    from sweep.trial.env import software

    software()
except Exception as exc:  # pragma: no cover - the trial captures it itself then
    log.debug("capturing the software environment failed: %s", exc)
