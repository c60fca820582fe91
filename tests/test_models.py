"""Networks speak Output: timm wrappers, registered models, checkpoints, cost."""

import pytest
import torch
from torch import nn

from kdbench.models import TimmNet, build_model
from kdbench.registry import UnknownNameError
from kdbench.train.cost import count_params, measure_cost


def test_timm_wrapper_matches_timm_forward_and_names_stages():
    torch.manual_seed(0)
    net = TimmNet("resnet10t", num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    torch.testing.assert_close(out.logits, net.body(x))
    assert list(out.features) == ["stage1", "stage2", "stage3", "stage4", "stage5", "pooled"]
    assert out.features["stage5"].shape == (2, 512, 1, 1)
    assert out.features["pooled"].shape == (2, 512)


def test_mobilenet_pooled_is_the_pre_logits_vector():
    net = TimmNet("mobilenetv3_small_050", num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    torch.testing.assert_close(out.logits, net.body(x))
    assert out.features["pooled"].shape == (2, 1024)


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet1O'; did you mean 'resnet18'"):
        build_model("resnet1O", 2)


def test_checkpoint_round_trip(tmp_path):
    a = build_model("resnet10t", 2)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = build_model("resnet10t", 2, checkpoint=str(tmp_path / "w.pt"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_checkpoint_is_loaded_as_data_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        build_model("resnet10t", 2, checkpoint=str(tmp_path / "evil.pt"))


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        from kdbench.output import Output

        pooled = self.conv(x).mean((2, 3))
        return Output(self.fc(pooled), {"pooled": pooled})


def test_cost_counts_multiply_adds_as_fvcore_does():
    cost = measure_cost(Conv(), (3, 16, 16))
    assert cost.params == 3 * 8 * 9 + 8 + 8 * 2 + 2 == count_params(Conv())
    assert cost.flops == 16 * 16 * 8 * 3 * 9 + 8 * 2  # conv MACs + linear MACs
    assert "aten::mean" in cost.unsupported_ops  # recorded, not silently dropped
