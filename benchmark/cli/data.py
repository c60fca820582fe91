"""``kdbench data``: face crops from FF++, Celeb-DF or a folder of videos; SynthFF as videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdbench.config import ConfigError
from kdbench.console import console, say

PREPARABLE = ("ff++", "celebdf", "folder")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``data prepare`` and ``data synth`` to the ``kdbench`` parser's subcommands."""
    data = sub.add_parser(
        "data", help="prepare face crops from real datasets; write SynthFF videos"
    )
    actions = data.add_subparsers(dest="action", required=True)

    prep = actions.add_parser(
        "prepare",
        help="videos -> face-crop PNGs and a manifest (resumable)",
        description="Sample frames from every video, crop the largest face (aligned on its "
        "landmarks with --detector dlib), write "
        "<out>/<dataset>/<video>/<frame>.png and <out>/<dataset>/manifest.csv.",
    )
    prep.add_argument("dataset", choices=PREPARABLE)
    prep.add_argument("--root", type=Path, required=True, help="the raw dataset's folder")
    prep.add_argument("--out", type=Path, required=True, help="where crops and manifest go")
    prep.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    prep.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    prep.add_argument(
        "--scale", type=float, default=1.3, help="face box enlargement, or aligned margin (1.3)"
    )
    prep.add_argument(
        "--detector",
        default="haar",
        help="a registered face detector: haar (default, box crops) or dlib (crops aligned on "
        "landmarks; needs pip install 'kdbench[align]')",
    )
    prep.add_argument("--workers", type=int, help="processes (default: one per CPU core)")
    ff = prep.add_argument_group("ff++ only")
    ff.add_argument("--compression", nargs="+", help="e.g. c23 c40 (default: all found)")
    ff.add_argument("--manipulations", nargs="+", help="e.g. Deepfakes (default: all found)")
    ff.add_argument("--splits", type=Path, help="folder of train/val/test.json (<root>/splits)")
    prep.set_defaults(func=cmd_prepare)

    synth = actions.add_parser(
        "synth",
        help="write SynthFF as mp4 videos in the FF++ layout (hq as c23, lq as c40)",
    )
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--videos", type=int, default=200, help="half real, half fake (200)")
    synth.add_argument("--frames", type=int, default=8, help="frames per video (8)")
    synth.add_argument("--size", type=int, default=128, help="frame side in pixels (128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--qualities", nargs="+", default=["hq", "lq"], help="raw, hq, lq")
    synth.set_defaults(func=cmd_synth)


def cmd_prepare(args) -> int:
    from kdbench.datasets.preprocess import CropSettings, prepare

    jobs, notes = video_jobs(args)
    settings = CropSettings(args.frames, args.size, args.scale, args.detector)
    summary = prepare(jobs, args.out, args.dataset, settings, args.workers, console.is_terminal)
    if not summary.rows:
        raise ConfigError(nothing_prepared(args.dataset, summary))
    per_s = summary.done / summary.seconds, summary.frames / summary.seconds
    rate = f"{per_s[0]:.2f} videos/s, {per_s[1]:.1f} frames/s"
    say(
        f"{args.dataset}: {summary.videos} videos: {summary.done} cropped now, "
        f"{summary.skipped} already done, {len(summary.failed)} failed; {summary.frames} crops, "
        f"{summary.no_face} of them without a face found (centre crop); "
        f"{summary.seconds:.1f} s ({rate})"
    )
    for video, reason in summary.failed:
        say(f"  failed: {video}: {reason}")
    for note in notes:
        say(note)
    say(f"manifest: {summary.folder / 'manifest.csv'} ({summary.rows} crops)")
    return 0


def nothing_prepared(dataset: str, summary) -> str:
    """The one line for a ``prepare`` that left no crops at all."""
    text = (
        f"{dataset}: nothing was prepared: {len(summary.failed)} of {summary.videos} videos "
        "could not be read"
    )
    if summary.failed:
        video, reason = min(summary.failed)
        text += f" (first: {video}: {reason})"
    return text


def video_jobs(args) -> tuple[list, list[str]]:
    """The videos to prepare for ``args.dataset`` and notes on what was left out."""
    ff_options = {"--compression": args.compression, "--manipulations": args.manipulations,
                  "--splits": args.splits}  # fmt: skip
    if args.dataset != "ff++":
        given = [flag for flag, value in ff_options.items() if value]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for ff++, not {args.dataset}")
    if not args.root.is_dir():
        raise ConfigError(f"--root {args.root}: no such folder")
    if args.dataset == "ff++":
        from kdbench.datasets import faceforensics

        jobs, unsplit = faceforensics.video_jobs(
            args.root, args.splits, args.compression, args.manipulations
        )
        notes = [f"{unsplit} videos no official split owns were left out"] if unsplit else []
        return jobs, notes
    if args.dataset == "celebdf":
        from kdbench.datasets import celebdf

        jobs, missing = celebdf.video_jobs(args.root)
        notes = (
            [f"{len(missing)} test-list videos are not on disk, e.g. {missing[0]}"]
            if missing
            else []
        )
        return jobs, notes
    from kdbench.datasets import folder

    return folder.video_jobs(args.root), []


def cmd_synth(args) -> int:
    from kdbench.datasets.synthff_disk import write_ff_layout

    done = write_ff_layout(
        args.out, tuple(args.qualities), videos=args.videos, frames=args.frames,
        size=args.size, seed=args.seed,
    )  # fmt: skip
    written = ", ".join(f"{n} videos in {c}" for c, n in done["written"].items())
    say(f"SynthFF in the FF++ layout at {args.out}: {written}; {done['left_out']} left out")
    say(
        f"next: kdbench data prepare ff++ --root {args.out} --out <crops>, then train with "
        "data.name=ff++ data.params.root=<crops> "
        "data.params.manipulations=[spatial,frequency,both]"
    )
    return 0
