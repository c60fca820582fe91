"""The README's config reference is the one the code writes, and it names every field."""

import dataclasses
from pathlib import Path

from kdbench.config_reference import SECTIONS, reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_generated_one():
    text = README.read_text()
    start, end = "<!-- config-reference: start -->\n", "<!-- config-reference: end -->"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == reference(), "regenerate it: python -m kdbench.config_reference"


def test_every_leaf_key_has_a_row_and_a_meaning():
    rows = [line.split(" | ") for line in reference().splitlines()[2:]]
    keys = {row[0].strip("| `") for row in rows}
    assert {"seed", "train.lr", "teacher.cache", "data.test.name", "train.test_epochs"} <= keys
    expected = {
        prefix + f.name
        for prefix, cls in SECTIONS
        for f in dataclasses.fields(cls)
        if not any(part.strip().endswith(("Config", "DatasetRef")) for part in f.type.split("|"))
    }
    assert keys == expected
    assert all(row[3].strip(" |") for row in rows), "a field without a comment in config.py"
