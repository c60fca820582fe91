"""Any timm model as a network that speaks ``Output``."""

from __future__ import annotations

import timm
from torch import Tensor, nn

from kdbench.output import Output

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
