"""Building a model by name: a registered kdbench model or any timm model."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from kdbench.errors import ConfigError
from kdbench.models.pretrained import timm_kwargs
from kdbench.models.timm_net import TimmNet
from kdbench.registry import MODELS, UnknownNameError, unknown_message


def build_model(
    name: str,
    num_classes: int,
    checkpoint: str | None = None,
    pretrained: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build model ``name``: a registered kdbench model or any timm model (random init, or
    ``pretrained``: a local timm weights file or Hugging Face cache folder).

    ``checkpoint``: a state dict saved by kdbench (loaded with ``weights_only=True``).
    """
    if name in MODELS:
        if pretrained:
            raise ConfigError(
                f"pretrained: {name!r} is a kdbench model; give its weights as checkpoint"
            )
        model = MODELS.get(name)(num_classes=num_classes, **kwargs)
    elif timm.is_model(name):
        extra = timm_kwargs(name, pretrained, num_classes) if pretrained else {}
        model = TimmNet(name, num_classes=num_classes, **extra, **kwargs)
    else:
        raise UnknownNameError(unknown_message("model", name, model_names()))
    if checkpoint:
        model.load_state_dict(load_state(checkpoint))
    return model


def model_names() -> list[str]:
    return MODELS.names() + timm.list_models()


def load_state(path: str | Path) -> dict:
    """A checkpoint's model weights; results from elsewhere are data, never code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)
