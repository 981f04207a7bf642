"""The trial process: build a model from its configuration, warm up, measure, return a ``Trial``.
Imports torch, transformers, Lightning, NVML and the fine-tuning packages (peft, bitsandbytes,
liger-kernel: where they are used), ``sweep.plan`` and ``sweep.results``; never ray, gradio or
``sweep.engine``."""
