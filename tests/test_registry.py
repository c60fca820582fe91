"""The generic registry: lookups, did-you-mean, patterns, plug-ins."""

import subprocess
import sys

import pytest

from kdbench.registry import (
    BACKENDS,
    DATASETS,
    DETECTORS,
    METHODS,
    Registry,
    UnknownNameError,
    load_plugin,
    registered_names,
    unknown_message,
)


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


@pytest.mark.parametrize("registry", [METHODS, DATASETS, DETECTORS, BACKENDS], ids=lambda r: r.kind)
def test_the_names_read_from_source_are_the_registered_ones(registry):
    """The fast path of check_name may not drift from what importing registers."""
    shipped = {n for n in registry.names() if registry.get(n).__module__.startswith("kdbench.")}
    assert registry.static_names() == shipped


def test_a_typo_is_reported_without_importing_torch():
    code = (
        "import sys\n"
        "from kdbench.config import ConfigError, build_config\n"
        "try:\n"
        "    build_config({'method': {'name': 'kdd'}})\n"
        "except ConfigError as err:\n"
        "    print(err)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = unknown_message("method", "kdd", METHODS.static_names())
    assert "did you mean 'kd' or 'rkd' or 'dkd'? (known: at, crd, dist, dkd," in expected
    assert out.stdout.splitlines() == [f"method.name: {expected}", "False"]


def test_names_registered_from_a_variable_or_a_plugin_group_are_not_guessed(tmp_path):
    module = tmp_path / "loop.py"
    module.write_text("for name in ('a', 'b'):\n    WIDGETS.register(name)(object())\n")
    assert registered_names(module, "WIDGETS") is None
    module.write_text("NAME = 'a'\n@WIDGETS.register(NAME)\nclass A: ...\nOTHER.register(x)\n")
    assert registered_names(module, "WIDGETS") == {"a"}
    assert Registry("model", ("kdbench.models",), None, None).static_names() is None
