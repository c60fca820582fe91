"""Which features a method compares: stage pairs at the same relative depth, the embedding."""

from __future__ import annotations

import math

from kdbench.methods.common import relative_stage, stage_names
from kdbench.output import Output

MIN_AREA = 16  # 4×4: the smallest map a stage method compares by default


def embedding_feature(out: Output) -> str:
    """The penultimate embedding of ``out``, as its layout declares it (``Output.embedding``:
    ``fused`` for the dual-branch teacher, ``pooled`` by default)."""
    return out.embedding


def compared_size(student: Output, teacher: Output, pair: tuple[str, str]) -> tuple[int, int]:
    """Height and width at which ``pair`` is compared: the smaller of the two maps'."""
    s_shape, t_shape = student.feature(pair[0]).shape, teacher.feature(pair[1]).shape
    return min(s_shape[2], t_shape[2]), min(s_shape[3], t_shape[3])


def large_pairs(
    student: Output, teacher: Output, method: str, *, skip_stem: bool = False
) -> list[tuple[str, str]]:
    """Each student stage (after the stem ``stage1`` if ``skip_stem``) with the teacher stage at
    the same relative depth, shallow to deep, where both maps are compared at 4×4 or more."""
    s_stages, t_stages = stage_names(student), stage_names(teacher)
    pairs = [
        (name, relative_stage(k + 1, len(s_stages), t_stages))
        for k, name in enumerate(s_stages)
        if k > 0 or not skip_stem
    ]
    large = [p for p in pairs if math.prod(compared_size(student, teacher, p)) >= MIN_AREA]
    if not large:
        raise ValueError(
            f"{method} auto: no stage pair has maps of 4×4 or more ({', '.join(s_stages)}); "
            "set pairs explicitly"
        )
    return large


def check_pairs(pairs: list[list[str]] | str) -> list[tuple[str, str]]:
    """``[[student_feature, teacher_feature], ...]`` as a list of tuples, or a clear error."""
    if isinstance(pairs, str) or not pairs or not all(len(pair) == 2 for pair in pairs):
        raise ValueError(
            f"pairs must be 'auto' or [[student_feature, teacher_feature], ...]: {pairs!r}"
        )
    return [(s_name, t_name) for s_name, t_name in pairs]


def check_maps(student: Output, teacher: Output, pairs: list, method: str) -> None:
    """Raise unless every feature named in ``pairs`` is a ``[B, C, H, W]`` map."""
    for s_name, t_name in pairs:
        for out, name in ((student, s_name), (teacher, t_name)):
            if out.feature(name).dim() != 4:
                raise ValueError(
                    f"{method} needs [B,C,H,W] maps; {name!r} is {tuple(out.features[name].shape)}"
                )


def pick_pairs(
    pairs: list[list[str]] | str,
    student: Output,
    teacher: Output,
    method: str,
    *,
    skip_stem: bool = False,
    deepest: int | None = None,
    maps: bool = True,
) -> list[tuple[str, str]]:
    """``pairs`` checked, or for ``auto`` the :func:`large_pairs` (after the stem if
    ``skip_stem``), the ``deepest`` of them only if given; with ``maps``, every feature named
    must be a ``[B, C, H, W]`` map."""
    if pairs == "auto":
        found = large_pairs(student, teacher, method, skip_stem=skip_stem)
        found = found if deepest is None else found[-deepest:]
    else:
        found = check_pairs(pairs)
    if maps:
        check_maps(student, teacher, found, method)
    return found


def teacher_stages(pairs: list[tuple[str, str]]) -> list[str]:
    """The teacher features of ``pairs``, each once, sorted."""
    return sorted({t_name for _, t_name in pairs})


def pick_embeddings(
    student: Output, teacher: Output, student_feature: str, teacher_feature: str
) -> tuple[str, str]:
    """The two embeddings' names, ``auto`` resolved by :func:`embedding_feature` on the
    teacher; an unknown name fails now, listing the names there are."""
    if teacher_feature == "auto":
        teacher_feature = embedding_feature(teacher)
    for out, name in ((student, student_feature), (teacher, teacher_feature)):
        out.feature(name)
    return student_feature, teacher_feature
