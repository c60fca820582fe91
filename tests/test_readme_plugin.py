"""The README's "Add a method" example, copied into a fresh folder, runs as written: the real
console script, from that folder, with the plugin given by module name and by file path."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
KDBENCH = Path(sys.executable).parent / "kdbench"


def example() -> tuple[str, str]:
    """The section's plugin file and its command, as the README shows them."""
    section = README.read_text().split("## Add a method", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(# my_methods\.py\n.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(kdbench --plugin .*?)\n```", section, re.S).group(1)
    return code, command


def test_the_plugin_example_runs_verbatim_from_its_folder(tmp_path):
    code, command = example()
    (tmp_path / "my_methods.py").write_text(code)
    env = dict(os.environ, CI="1", KDBENCH_CACHE=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    args = shlex.split(command)
    assert args[:3] == ["kdbench", "--plugin", "my_methods"]
    done = subprocess.run(
        [str(KDBENCH), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    student = next(r for r in records if r["config"]["method"]["name"] == "pooled-mse")
    assert student["status"] == "done" and set(student["history"][0]["train"]) == {"ce", "hint"}

    # the same plugin as a path, from another folder; the finished run is found, not retrained
    by_path = [str(KDBENCH), "--plugin", str(tmp_path / "my_methods.py"), *args[3:]]
    again = subprocess.run(by_path, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already done" in again.stderr + again.stdout


def test_a_missing_plugin_file_is_one_line(tmp_path):
    done = subprocess.run(
        [str(KDBENCH), "--plugin", "./nope.py", "list", "methods"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == "--plugin './nope.py': no such file (a module name or a .py file)"


def test_add_a_method_documents_every_piece_of_the_method_seam():
    """Every Context field and every overridable Method hook is named in "Add a method", so
    the docs cannot fall behind the seam (issue 16 item 9)."""
    import dataclasses
    import inspect

    from kdbench.method import Context, Method

    section = README.read_text().split("## Add a method", 1)[1].split("\n## ", 1)[0]
    fields = [f.name for f in dataclasses.fields(Context)]
    hooks = [n for n, v in vars(Method).items() if inspect.isfunction(v) and n != "__init__"]
    flags = [n for n in vars(Method) if n.startswith("needs_")]
    missing = [
        name
        for name in fields + hooks + flags
        if f"`{name}" not in section and f"{name}`" not in section and name not in section
    ]
    assert not missing, f"Add a method does not mention {missing}"
