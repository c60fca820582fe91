"""Any timm model as a network that speaks ``Output``."""

from __future__ import annotations

import timm
from torch import Tensor, nn

from kdbench.output import Head, Output

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

    def classifier_head(self) -> Head:
        """timm's ``forward_head`` on the last stage's map: the network's own logits wherever
        the last stage is the final feature map (ResNets; not where timm normalises after it)."""
        return Head((f"stage{len(self.body.feature_info)}",), TimmHead(self.body))


class TimmHead(nn.Module):
    """``body.forward_head``: global pooling and the classifier of a timm model."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_head(x)
