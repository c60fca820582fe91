"""``kdbench config show``: a run config as it will run (every default written out) and its run
id, without running it."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from kdbench.config import ConfigError, build_config, load_preset, preset_names
from kdbench.schema import load_yaml


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="show a run config, resolved, and its run id")
    verbs = config.add_subparsers(dest="verb", required=True, metavar="show")
    show = verbs.add_parser("show", help="the resolved config (YAML) and its run id")
    show.add_argument("config", nargs="?", help="a run config YAML")
    show.add_argument("--preset", help=f"a shipped run preset ({', '.join(preset_names())})")
    show.add_argument("overrides", nargs="*", metavar="key.sub=value")
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> None:
    import yaml

    if args.config and "=" in args.config:  # argparse took the first override for the file
        args.overrides.insert(0, args.config)
        args.config = None
    if bool(args.config) == bool(args.preset):
        raise ConfigError("config show: give a config file or --preset NAME (one of them)")
    data = load_preset(args.preset) if args.preset else load_yaml(args.config)
    if "grid" in data:
        raise ConfigError("a sweep spec, not a run config: try `kdbench sweep plan`")
    cfg = build_config(data, args.overrides)
    print(yaml.safe_dump(asdict(cfg), sort_keys=False, allow_unicode=True), end="")
    print(f"# run id: {cfg.run_id()}")
