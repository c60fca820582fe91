"""Typed configs: YAML, overrides, validation messages, run ids."""

import pytest

from kdbench.config import (
    ConfigError,
    RunConfig,
    TeacherConfig,
    apply_overrides,
    build_config,
    load_preset,
    load_yaml,
    preset_names,
)


def test_defaults_build_and_overrides_are_typed():
    cfg = build_config({}, ["train.lr=0.01", "seed=3", "data.params.quality=lq"])
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.seed == 3
    assert cfg.data.params["quality"] == "lq"


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert build_config({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train.epochs: expected int, got 2.5"):
        build_config({"train": {"epochs": 2.5}})


def test_a_float_field_takes_what_float_reads(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 and 1.0e6 as strings; every user writes learning rates so
    assert build_config({}, ["train.lr=1e-3"]).train.lr == 1e-3
    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 5e-4, weight_decay: 1.0e-2}\n")
    cfg = build_config(load_yaml(path))
    assert (cfg.train.lr, cfg.train.weight_decay) == (5e-4, 1e-2)
    with pytest.raises(ConfigError, match=r"train.lr: expected float, got 'fast'"):
        build_config({}, ["train.lr=fast"])
    assert build_config({}, ["student.name=1e3"]).student.name == "1e3"  # str fields stay str


def test_unknown_key_names_the_valid_ones_and_suggests():
    with pytest.raises(ConfigError) as err:
        build_config({}, ["train.lrr=0.1"])
    assert "unknown config key 'train.lrr'; did you mean 'train.lr'?" in str(err.value)
    assert "train.epochs" in str(err.value)


def test_nested_optional_dataclass_is_built():
    cfg = build_config({"teacher": {"name": "dual-branch", "kwargs": {"branch": "spatial"}}})
    assert isinstance(cfg.teacher, TeacherConfig)
    assert cfg.teacher.kwargs["branch"] == "spatial"
    assert build_config({}).teacher is None


def test_override_creates_missing_sections_and_parses_yaml_values():
    data = apply_overrides({}, ["teacher.kwargs.branch=spatial", "train.milestones=[1, 2]"])
    assert data == {"teacher": {"kwargs": {"branch": "spatial"}}, "train": {"milestones": [1, 2]}}


def test_malformed_override_says_what_is_expected():
    with pytest.raises(ConfigError, match=r"expected key\.sub=value"):
        build_config({}, ["train.lr"])


def test_yaml_is_data_only(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_yaml(path)


def test_run_id_is_a_content_hash():
    a = build_config({}, ["seed=1"])
    assert a.run_id() == build_config({}, ["seed=1"]).run_id()
    assert a.run_id() != build_config({}, ["seed=2"]).run_id()
    assert a.run_id() != build_config({}, ["seed=1", "method.params.alpha=0.5"]).run_id()
    # where a run executes does not change what it is
    assert a.run_id() == build_config({}, ["seed=1", "device=cpu", "data.workers=4"]).run_id()
    assert len(a.run_id()) == 12


def test_presets_ship_and_load():
    assert "smoke" in preset_names()
    assert {"smoke", "demo", "paper"} <= set(preset_names("sweep"))
    cfg = build_config(load_preset("smoke"))
    assert isinstance(cfg, RunConfig)
    assert cfg.data.name == "synthff"
    with pytest.raises(ConfigError, match="unknown run preset 'smok'; did you mean 'smoke'"):
        load_preset("smok")


def test_a_preset_of_the_other_kind_says_which_command_takes_it():
    with pytest.raises(ConfigError) as err:
        load_preset("paper")
    assert str(err.value) == (
        "'paper' is a sweep preset, not a run preset; try `kdbench sweep run --preset paper`"
    )


def test_a_missing_malformed_or_empty_config_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line \d+, column \d+"):
        load_yaml(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the file is empty"):
        load_yaml(empty)
    assert load_yaml(empty, empty_ok=True) == {}
