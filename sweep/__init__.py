"""transformers-sweep: measure Transformer training speed and memory per GPU type."""

__version__ = "0.1.0"
