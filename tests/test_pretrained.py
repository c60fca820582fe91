"""Pretrained timm weights from a local file or a Hugging Face cache folder, offline: the
weights the test writes itself load into the student, and its first logits are the source's."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from kdbench.config import ConfigError, build_config
from kdbench.models import build_model

NAME = "resnet10t"


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(3)
    return timm.create_model(NAME, num_classes=2).eval()


@pytest.fixture(scope="module", params=["pth", "safetensors", "hf-folder"])
def weights(request, source, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if request.param == "pth":
        torch.save(state, folder / "w.pth")
        return folder / "w.pth"
    snapshot = folder / "models--timm--resnet10t.test" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file(state, snapshot / "model.safetensors")
    return snapshot / "model.safetensors" if request.param == "safetensors" else folder


def test_the_student_starts_from_the_file(source, weights):
    student = build_model(NAME, 2, pretrained=str(weights)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(student(x).logits, source(x), rtol=0, atol=0)


def test_another_class_count_keeps_the_backbone(source, weights):
    student = build_model(NAME, 5, pretrained=str(weights)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        theirs = source.forward_head(source.forward_features(x), pre_logits=True)
        torch.testing.assert_close(student(x).features["pooled"], theirs, rtol=0, atol=0)


def test_the_weights_content_is_part_of_the_run_id(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    given = build_config({"student": {"name": NAME, "pretrained": str(path)}})
    before = given.run_id()
    assert build_config({"student": {"name": NAME}}).run_id() != before
    state = source.state_dict()
    state["fc.bias"] = state["fc.bias"] + 1  # other weights at the same path: another run
    torch.save(state, path)
    assert given.run_id() != before


def test_a_missing_file_or_a_kdbench_model_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file or folder .*Hugging Face cache folder"):
        build_model(NAME, 2, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match=r"no model\.safetensors"):
        build_model(NAME, 2, pretrained=str(tmp_path))
    with pytest.raises(ConfigError, match="kdbench model; give its weights as checkpoint"):
        build_model("cifar_resnet8", 2, pretrained=str(tmp_path))


def test_a_teacher_trained_by_a_sweep_starts_from_its_pretrained_weights(weights):
    from kdbench.sweep.plan import Plan, resolve_teacher

    cfg = build_config(
        {"method": {"name": "kd"}, "teacher": {"name": NAME, "pretrained": str(weights)}}
    )
    plan = Plan()
    resolve_teacher(cfg, plan)
    (teacher,) = plan.teachers
    assert teacher.student.pretrained == str(weights)
