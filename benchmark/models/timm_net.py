"""Any timm model as a network that speaks ``Output``."""

from __future__ import annotations

import timm
from torch import Tensor, nn

from kdbench.models.preact import PreactPoint, PreactUnsupported, record
from kdbench.output import Head, Output

# The version of what this module computes, part of every run id that uses it (kdbench.identity).
# Set a new one (the date of the change) when an edit changes a result; a refactor keeps it.
RESULT_VERSION = "b4b4ebec112f"


class TimmNet(nn.Module):
    """A timm model returning ``Output``: ``stage1..stageN`` from ``forward_intermediates``,
    ``pooled`` (the pre-logits vector) and the classifier's logits."""

    def __init__(
        self, name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs
    ) -> None:
        super().__init__()
        self.body = timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
        self.name = name
        self.preact: dict[str, Tensor] | None = None  # stageK.preact, once requested

    def forward(self, x: Tensor) -> Output:
        final, stages = self.body.forward_intermediates(x)
        pooled = self.body.forward_head(final, pre_logits=True)
        features = {f"stage{i + 1}": f for i, f in enumerate(stages)}
        features["pooled"] = pooled
        features.update(self.preact or {})
        return Output(self.body.get_classifier()(pooled), features)

    def preact_points(self) -> dict[str, PreactPoint]:
        """ResNet-family models (timm ``resnet*``, ``resnet10t`` …): the stem's ``act1`` after
        ``bn1``, and in each stage's last block the final activation and its batch norm."""
        body = self.body
        if not all(hasattr(body, a) for a in ("act1", "bn1", "layer1")):
            raise PreactUnsupported(
                f"{self.name}: pre-activation features are implemented for ResNet-family "
                "models only (timm resnet*, the CIFAR ResNets)"
            )
        points = {"stage1": PreactPoint(body.act1, body.bn1)}
        for k in range(1, len(body.feature_info)):
            block = getattr(body, f"layer{k}")[-1]
            last = 3 if hasattr(block, "act3") else 2
            points[f"stage{k + 1}"] = PreactPoint(
                getattr(block, f"act{last}"), getattr(block, f"bn{last}")
            )
        return points

    def enable_preact(self) -> None:
        if self.preact is None:
            self.preact = record(self.preact_points())

    def preact_norms(self) -> dict[str, nn.BatchNorm2d]:
        return {f"{k}.preact": p.norm for k, p in self.preact_points().items()}

    def classifier_head(self) -> Head | None:
        """timm's global pooling and classifier on the last stage's map: the network's own
        logits where its head is just those (ResNets; not where a conv or a norm comes between,
        as in MobileNetV3: a method reusing the head checks that it gives the logits)."""
        if not hasattr(self.body, "global_pool"):
            return None
        stage = f"stage{len(self.body.feature_info)}"
        return Head((stage,), PoolClassifier(self.body.global_pool, self.body.get_classifier()))


class PoolClassifier(nn.Module):
    """A timm model's ``global_pool`` then its classifier."""

    def __init__(self, pool: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.pool = pool
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(x).flatten(1))
