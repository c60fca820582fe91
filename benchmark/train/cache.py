"""The teacher-output cache: a frozen teacher's outputs computed once per (sample, view) and
stored under the cache dir, shared by every run that distils the same teacher weights on the
same data; verified before it is trusted."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kdbench.results import set_aside, write_atomic
from kdbench.train.checkpoint import file_sha256, read_digest

if TYPE_CHECKING:
    from kdbench.train.teacher import LiveTeacher


CACHE_FORMAT = 2


class CacheUnusable(Exception):
    """The teacher-output cache cannot serve this run; the message is one line saying why and
    that the live teacher runs instead."""


class CacheWarning(UserWarning):
    """The teacher-output cache was damaged (set aside, recomputed) or cannot be used."""


class DamagedOutput(Exception):
    """A stored output that fails its checks: missing, truncated, unreadable or altered."""


class TeacherCache:
    """Stored teacher outputs: one folder per (teacher weights, dataset, precision, device type),
    one ``.npy`` per output (``logits`` or a feature), rows ``index * views + view``, each with a
    ``.json`` recording its shape, dtype, size and sha256.

    Files are written whole (fsynced, under a name unique to the process) and renamed into
    place, the metadata last, so a reader never sees half a file. A stored output that fails
    its checks is reported (``CacheWarning``), its folder renamed to
    ``<digest>.damaged-<UTC time>`` and every output recomputed. A cache that cannot be written
    or set aside raises ``CacheUnusable`` and leaves no temporary file behind.
    """

    def __init__(self, root: Path, weights: Path, dataset: Dataset, dtype, device) -> None:
        key = {
            "format": CACHE_FORMAT,
            "weights": file_digest(weights),
            "dataset": dataset.fingerprint,
            "views": dataset.num_views,
            "dtype": str(dtype),
            "device": torch.device(device).type,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = Path(root) / "teacher-outputs" / digest
        self.key, self.dataset = key, dataset

    def table(self, teacher: LiveTeacher, batch_size: int) -> dict[str, Tensor]:
        """Every output ``teacher`` keeps, computing (once) the ones not stored yet. Raises
        ``CacheUnusable`` when the cache cannot be written or set aside."""
        names = ["logits", *teacher.features]
        try:
            return self.checked(teacher, names, batch_size)
        except OSError as err:
            raise CacheUnusable(unwritable(err, self.folder)) from err

    def checked(self, teacher: LiveTeacher, names: list[str], batch_size: int) -> dict:
        """``stored``, tried again from scratch once if a stored output is damaged."""
        try:
            return self.stored(teacher, names, batch_size)
        except DamagedOutput as err:
            self.set_aside(str(err))
        try:
            return self.stored(teacher, names, batch_size)
        except DamagedOutput as err:
            raise CacheUnusable(f"teacher cache {err} again after a rebuild; {LIVE}") from err

    def stored(self, teacher: LiveTeacher, names: list[str], batch_size: int) -> dict:
        """The outputs ``names``, computing and storing the missing ones first."""
        missing = [n for n in names if not (self.folder / f"{n}.json").exists()]
        if missing:
            self.compute(teacher, missing, batch_size)
        return {name: self.load(name) for name in names}

    def set_aside(self, problem: str) -> None:
        """Rename the damaged folder out of the way (never delete it) and say so in one line."""
        try:
            aside = set_aside(self.folder)
        except FileNotFoundError:
            pass  # another run set it aside first
        except OSError as err:
            raise CacheUnusable(
                f"teacher cache {problem}; cannot set {self.folder} aside: {describe(err)}; {LIVE}"
            ) from err
        warnings.warn(
            f"teacher cache {problem}; set aside as {aside}, recomputing from the teacher",
            CacheWarning,
            stacklevel=4,  # the caller of table
        )

    def compute(self, teacher: LiveTeacher, names: list[str], batch_size: int) -> None:
        """Run the teacher over every (sample, view) and store the outputs ``names``."""
        arrays, dtypes = self.outputs(teacher, names, batch_size)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "key.json", json.dumps(self.key, indent=2).encode())
        for name, array in arrays.items():
            self.publish(name, array, dtypes[name])

    def outputs(self, teacher: LiveTeacher, names: list[str], batch_size: int) -> tuple:
        """The outputs ``names`` in memory as raw bits, one row per key, and their dtypes."""
        keys = [(i, v) for i in range(len(self.dataset)) for v in range(self.dataset.num_views)]
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=keys)
        arrays: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        row = 0
        for batch in loader:
            out = teacher.raw(batch["image"])
            for name in names:
                bits = raw_bits(out[name].contiguous())
                if name not in arrays:
                    arrays[name] = np.empty((len(keys), *bits.shape[1:]), bits.dtype)
                    dtypes[name] = str(out[name].dtype)
                arrays[name][row : row + len(bits)] = bits
            row += len(batch["image"])
        return arrays, dtypes

    def publish(self, name: str, array: np.ndarray, dtype: str) -> None:
        """Write the array, then its metadata (which marks it done), each atomically."""
        data = npy_bytes(array)
        meta = {
            "shape": list(array.shape),
            "dtype": dtype,
            "stored": array.dtype.str,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        write_atomic(self.folder / f"{name}.npy", data)
        write_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())

    def load(self, name: str) -> Tensor:
        """One stored output, read into memory and checked against its metadata."""
        meta = self.metadata(name)
        path = self.folder / f"{name}.npy"
        try:
            data = bytearray(path.read_bytes())
        except OSError as err:
            raise DamagedOutput(f"{path} is unreadable: {describe(err)}") from err
        if len(data) != meta["bytes"]:
            raise DamagedOutput(f"{path} has {len(data)} bytes, {meta['bytes']} were written")
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise DamagedOutput(f"{path} does not match the sha256 recorded when it was written")
        array = npy_array(data)
        if list(array.shape) != meta["shape"] or array.dtype.str != meta["stored"]:
            raise DamagedOutput(f"{path} does not match its record {name}.json")
        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if meta["dtype"] == "torch.bfloat16" else tensor

    def metadata(self, name: str) -> dict:
        """The record written with output ``name``, checked to be one."""
        path = self.folder / f"{name}.json"
        try:
            meta = json.loads(path.read_bytes())
        except (OSError, ValueError) as err:
            raise DamagedOutput(f"{path} is unreadable: {describe(err)}") from err
        if not isinstance(meta, dict) or set(meta) != META_KEYS:
            raise DamagedOutput(f"{path} is not a format-{CACHE_FORMAT} output record")
        return meta


LIVE = "running the live teacher instead"
META_KEYS = {"shape", "dtype", "stored", "bytes", "sha256"}
NPY_HEADER_MAX = 1 << 16  # what np.save writes before the data, at most, for our arrays


def unwritable(err: OSError, folder: Path) -> str:
    """The one line that says the cache could not be written and what happens instead."""
    return f"cannot write the teacher cache at {err.filename or folder}: {describe(err)}; {LIVE}"


def describe(err: Exception) -> str:
    """An error in one line: ``[Errno 28] No space left on device`` without the file name."""
    if isinstance(err, OSError) and err.strerror:
        return f"[Errno {err.errno}] {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


def npy_bytes(array: np.ndarray) -> memoryview:
    """``array`` as the bytes of a ``.npy`` file (in memory: plain writes report a full disk)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getbuffer()


def npy_array(data: bytearray) -> np.ndarray:
    """The array held in a ``.npy`` file's bytes, sharing them."""
    header = io.BytesIO(memoryview(data)[:NPY_HEADER_MAX])
    version = np.lib.format.read_magic(header)
    read = np.lib.format.read_array_header_1_0
    if version != (1, 0):
        read = np.lib.format.read_array_header_2_0
    shape, _, dtype = read(header)
    return np.frombuffer(data, dtype, offset=header.tell()).reshape(shape)


def raw_bits(value: Tensor) -> np.ndarray:
    """A tensor as numpy without changing a bit (bf16 as its int16 bit pattern)."""
    value = value.detach().cpu()
    return (value.view(torch.int16) if value.dtype == torch.bfloat16 else value).numpy()


def file_digest(path: Path) -> str:
    """The weights' sha256 (16 hex): the checksum kdbench wrote next to them, checked when the
    teacher run's result was trusted, else computed."""
    return (read_digest(path) or file_sha256(path))[:16]
