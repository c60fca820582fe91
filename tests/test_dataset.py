"""The dataset contract (kdbench.dataset): what it accepts and refuses, and that every registered
dataset has a test holding it to the contract."""

import re
from pathlib import Path

import pytest
import torch

from kdbench.config import ConfigError
from kdbench.dataset import check_dataset
from kdbench.datasets.synthff import SynthFF
from kdbench.registry import DATASETS


class Toy:
    """A minimal dataset keeping the contract; tests break one piece at a time."""

    num_classes = 2

    def __init__(self, **item):
        self.item = {"image": torch.zeros(3, 4, 4), "label": torch.tensor(1), "index": 0} | item
        self.labels = [1, 0]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {k: v for k, v in self.item.items() if v is not None} | {"index": i}


def test_synthff_keeps_the_dataset_contract():
    for split in ("train", "val", "test"):
        check_dataset(SynthFF(split, videos=20), f"synthff ({split})")


def test_a_minimal_dataset_passes_and_video_is_optional():
    check_dataset(Toy(), "toy")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label": None}, r"toy, item 0: missing 'label' \(an item has image, label, index"),
        ({"image": torch.zeros(4, 4)}, r"image must be a float tensor \[C, H, W\], got .*\[4, 4\]"),
        ({"image": torch.zeros(3, 4, 4, dtype=torch.uint8)}, r"float tensor .* got torch.uint8"),
        ({"label": torch.tensor(2)}, r"label 2 is outside \[0, 2\)"),
    ],
)
def test_a_broken_item_is_named_in_one_line(change, message):
    with pytest.raises(ConfigError, match=message):
        check_dataset(Toy(**change), "toy")


def test_broken_attributes_are_named():
    toy = Toy()
    toy.labels = [1]
    with pytest.raises(ConfigError, match=r"toy: labels has 1 entries for 2 items"):
        check_dataset(toy, "toy")
    toy = Toy()
    toy.num_views = 2
    with pytest.raises(ConfigError, match=r"num_views and fingerprint go together"):
        check_dataset(toy, "toy")
    toy = Toy()
    toy.num_classes = 1
    with pytest.raises(ConfigError, match=r"num_classes must be an int >= 2, got 1"):
        check_dataset(toy, "toy")


def test_every_registered_dataset_has_a_contract_test():
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    tested = set(re.findall(r"def test_(\w+?)_keeps_the_dataset_contract", tests))
    names = {re.sub(r"\W", "", name) for name in DATASETS.names()}
    assert names <= tested, f"no contract test for {names - tested}"  # ff++ is test_ff_...


def test_checking_a_dataset_draws_no_random_number():
    import random

    import numpy as np

    def draws() -> tuple:
        return torch.rand(3).tolist(), random.random(), float(np.random.rand())

    def seeded() -> None:
        torch.manual_seed(0), random.seed(0), np.random.seed(0)

    dataset = SynthFF("train", videos=20)
    assert dataset.num_views == 2  # an integer key draws a random view
    seeded()
    expected = draws()
    seeded()
    check_dataset(dataset, "synthff (train)")
    assert draws() == expected
