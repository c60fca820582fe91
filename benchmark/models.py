"""Networks that speak ``Output``: any timm model, plus models registered in ``MODELS``."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from kdbench.output import Output
from kdbench.registry import MODELS, UnknownNameError, unknown_message

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "b4b4ebec112f"


class TimmNet(nn.Module):
    """A timm model returning ``Output``: ``stage1..stageN`` from ``forward_intermediates``,
    ``pooled`` (the pre-logits vector) and the classifier's logits."""

    def __init__(self, name: str, num_classes: int, in_chans: int = 3, **kwargs) -> None:
        super().__init__()
        self.body = timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
        )

    def forward(self, x: Tensor) -> Output:
        final, stages = self.body.forward_intermediates(x)
        pooled = self.body.forward_head(final, pre_logits=True)
        features = {f"stage{i + 1}": f for i, f in enumerate(stages)}
        features["pooled"] = pooled
        return Output(self.body.get_classifier()(pooled), features)


def build_model(name: str, num_classes: int, checkpoint: str | None = None, **kwargs) -> nn.Module:
    """Build model ``name``: a registered kdbench model or any timm model (random init).

    ``checkpoint``: a state dict saved by kdbench (loaded with ``weights_only=True``).
    """
    if name in MODELS:
        model = MODELS.get(name)(num_classes=num_classes, **kwargs)
    elif timm.is_model(name):
        model = TimmNet(name, num_classes=num_classes, **kwargs)
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
