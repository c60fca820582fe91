"""Every network that speaks ``Output``: any timm model (``timm_net``), the dual-branch teacher
and its frequency decomposition, the CIFAR networks, and plugins from the ``kdbench.models``
entry-point group. Importing this package registers every shipped model; a new model is one
file here that registers itself with ``@MODELS.register(name)``.
"""

import importlib
import pkgutil

from kdbench.models.build import build_model, load_state, model_names
from kdbench.models.timm_net import TimmNet

__all__ = ["TimmNet", "build_model", "load_state", "model_names"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
