"""The generic registry: lookups, did-you-mean, patterns, plug-ins."""

import sys

import pytest

from kdbench.registry import METHODS, Registry, UnknownNameError, load_plugin


def test_get_returns_what_was_registered():
    reg = Registry("widget")

    @reg.register("round")
    class Round:
        pass

    assert reg.get("round") is Round
    assert "round" in reg and "square" not in reg


def test_unknown_name_suggests_the_closest():
    reg = Registry("widget")
    for name in ("fitnets", "kd", "crd"):
        reg.register(name)(object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("fitnet")
    expected = "unknown widget 'fitnet'; did you mean 'fitnets'? (known: crd, fitnets, kd)"
    assert str(err.value) == expected


def test_unknown_name_without_a_close_match_lists_the_known():
    reg = Registry("widget")
    reg.register("kd")(object())
    with pytest.raises(UnknownNameError, match=r"unknown widget 'zzz' \(known: kd\)"):
        reg.get("zzz")


def test_registering_two_things_under_one_name_is_an_error():
    reg = Registry("widget")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(str)


def test_names_filter_by_pattern():
    assert METHODS.names("feat-*") == ["feat-both", "feat-frequency", "feat-spatial"]
    assert {"vanilla", "kd", "fitnets", "at", "crd", "two-in-one"} <= set(METHODS.names())


def test_plugin_module_registers_a_method(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(
        "from kdbench.registry import METHODS\n"
        "from kdbench.methods.vanilla import Vanilla\n"
        "@METHODS.register('plugged-in')\n"
        "class Plugged(Vanilla):\n"
        "    description = 'from a plug-in'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin("my_plugin_mod")
    assert METHODS.get("plugged-in").description == "from a plug-in"
    sys.modules.pop("my_plugin_mod")


def test_missing_plugin_module_is_a_clear_exit():
    with pytest.raises(SystemExit, match="--plugin 'no_such_mod_xyz': cannot import it"):
        load_plugin("no_such_mod_xyz")
