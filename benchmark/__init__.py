"""kdbench: a benchmark suite for knowledge distillation, accuracy and cost."""

import os

# Before torch loads OpenMP: spinning worker threads make a CPU step ~30x slower whenever
# another process shares the cores (measured: 0.26 s vs 8.9 s per mobilenetv3 step on 2 busy
# cores). Passive waiting costs nothing measurable on an idle machine. A user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
