"""Limited data: a fixed fraction of the training videos for the student, all of them for the
teacher."""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.config import ConfigError
from kdbench.datasets.synthff import SynthFF
from kdbench.sweep.plan import Plan, resolve_teacher
from kdbench.sweep.runner import run_in_process
from kdbench.train import validate
from kdbench.train.subset import VideoSubset, limit, video_fraction
from kdbench.train.teacher import cacheable


def test_a_fraction_keeps_whole_videos_of_each_label_and_the_same_ones_every_time():
    videos = [f"v{i // 2}" for i in range(40)]  # 20 videos of 2 frames
    labels = np.array([int(i // 2 >= 5) for i in range(40)])  # 5 real videos, 15 fake
    keep = video_fraction(videos, labels, 0.4)
    kept = {videos[i] for i in keep}
    assert len(keep) == 2 * len(kept)  # both frames of every chosen video
    assert sum(labels[i] == 0 for i in keep) == 2 * 2  # ceil(0.4 * 5) real videos
    assert sum(labels[i] == 1 for i in keep) == 2 * 6  # ceil(0.4 * 15) fake videos
    assert np.array_equal(keep, video_fraction(videos, labels, 0.4))
    tiny = video_fraction(videos, labels, 0.01)
    assert sorted({int(labels[i]) for i in tiny}) == [0, 1] and len(tiny) == 2 * 2  # 1 per label


def test_a_subset_speaks_the_dataset_contract_with_its_own_indices():
    full = SynthFF("train", videos=20, frames=2, size=32)
    part = limit(full, 0.5)
    assert isinstance(part, VideoSubset) and limit(full, 1.0) is full
    assert 0 < len(part) < len(full) and len(part) % 2 == 0
    assert part.num_views == full.num_views and part.num_classes == 2
    assert cacheable(part) is None and part.fingerprint != full.fingerprint
    for position in (0, len(part) - 1):
        item = part[position, 1]
        inner = full[int(part.keep[position]), 1]
        assert item["index"] == position and item["view"] == 1
        assert item["video"] == inner["video"] and bool((item["image"] == inner["image"]).all())
        assert int(item["label"]) == part.labels[position]


def test_a_fraction_outside_0_1_is_refused_before_training(tiny):
    with pytest.raises(ConfigError, match=r"data\.train_fraction: expected a fraction in \(0, 1\]"):
        validate(tiny("data.train_fraction=0"))


def test_the_teacher_can_see_all_the_data_and_is_shared_with_the_full_data_sweep(tiny):
    full, few = Plan(), Plan()
    resolve_teacher(tiny("method.name=kd"), full)
    student = resolve_teacher(
        tiny("method.name=kd", "data.train_fraction=0.5", "teacher.data.train_fraction=1.0"), few
    )
    assert student.data.train_fraction == 0.5
    assert few.teachers[0].data.train_fraction == 1.0
    assert few.teachers[0].run_id() == full.teachers[0].run_id()
    assert tiny("data.train_fraction=0.5").run_id() != tiny().run_id()


def test_teacher_data_overrides_merge_into_the_students_data(tiny):
    plan = Plan()
    resolve_teacher(tiny("method.name=kd", "teacher.data.params.quality=lq"), plan)
    (teacher,) = plan.teachers
    assert teacher.data.params["quality"] == "lq"
    assert teacher.data.params["videos"] == 20  # the student's, kept: a merge, not a swap


@pytest.mark.slow
def test_a_student_trains_on_a_fraction_from_a_teacher_that_saw_everything(tiny, tmp_path):
    plan = Plan()
    student = resolve_teacher(
        tiny("method.name=kd", "data.train_fraction=0.5", "teacher.data.train_fraction=1.0"), plan
    )
    teacher, record = run_in_process([*plan.teachers, student], tmp_path, log=lambda *_: None)
    assert record["status"] == "done", record.get("error")
    assert record["dataset"]["train_size"] < teacher["dataset"]["train_size"]
    assert record["dataset"]["val_size"] == teacher["dataset"]["val_size"]
    assert record["teacher"]["cache"] is True


def test_labels_say_how_much_of_the_training_data_a_run_saw():
    from kdbench.report.labels import data_label

    assert data_label({"name": "synthff", "params": {"quality": "lq"}}) == "synthff lq"
    limited = {"name": "synthff", "params": {"quality": "lq"}, "train_fraction": 0.25}
    assert data_label(limited) == "synthff lq 25% train"
