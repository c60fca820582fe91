"""kdbench: a benchmark suite for knowledge distillation, accuracy and cost."""

__version__ = "0.1.0"
