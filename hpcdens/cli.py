"""The ``hpcdens`` command. Each subcommand parses its options and calls into the package; the
logic lives in the modules. Input errors end with one message and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import HpcdensError, InputError

log = logging.getLogger("hpcdens")

NOT_YET = {
    "train": "descriptors, Bayesian neural network and training (issue: descriptors/BNN)",
    "predict": "MPI domain-decomposed prediction (issue: MPI prediction)",
    "energy": "Harris-Foulkes energy of a prediction (issue: Harris-Foulkes energy)",
    "evaluate": "evaluation against a DFT test set (issue: Harris-Foulkes energy)",
    "learn": "Bayesian active learning (issue: active learning)",
}


def output_path(path: str | Path, overwrite: bool, what: str = "output") -> Path:
    """Check an output file path before any work: its directory exists, and it does not exist
    unless ``overwrite``. Raises InputError naming the fix."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{what} directory {str(path.parent)!r} does not exist. "
                         f"Fix: create it (mkdir -p {path.parent}) or choose another path")
    if path.exists() and not overwrite:
        raise InputError(f"{what} {str(path)!r} already exists. Fix: pass --overwrite to replace it, "
                         "or choose another path")
    return path


def _cmd_structures(args) -> int:
    from .config import load_config
    from .plan import build_plan
    from .structures import write_structures

    config = load_config(args.config)
    out = output_path(args.out or Path(config.output.directory) / "structures.extxyz", args.overwrite,
                      "structure file")
    tasks = build_plan(config)
    frames = [task.build_atoms() for task in tasks]
    write_structures(out, frames)
    print(f"wrote {len(frames)} structures ({len(set(t.composition for t in tasks))} compositions "
          f"x {config.snapshots.per_composition} snapshots) to {out}")
    return 0


def _add_structures(sub):
    p = sub.add_parser("structures", help="build the structures of an input file and write extxyz",
                       description="Build every (composition, snapshot) structure of CONFIG and write "
                       "them to one extended-XYZ file that ASE reads (default: "
                       "<output.directory>/structures.extxyz).")
    p.add_argument("config", help="input file (TOML), see inputs/")
    p.add_argument("--out", help="output .extxyz file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_structures)


def _add_not_yet(sub):
    for name, what in NOT_YET.items():
        p = sub.add_parser(name, help=f"(not yet available: {what})")
        p.add_argument("args", nargs="*")
        p.set_defaults(func=lambda args, name=name, what=what: _not_yet(name, what))


def _not_yet(name: str, what: str) -> int:
    print(f"hpcdens {name}: not available in this version; it arrives with {what}.", file=sys.stderr)
    return 3


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcdens",
        description="Bayesian neural-network electron densities of multi-element alloys on the "
        "real-space DFT grid. Run a subcommand with --help for its options; docs/ has a page each.")
    parser.add_argument("--version", action="version", version=f"hpcdens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    _add_not_yet(sub)
    return parser


COMMANDS = [_add_structures]


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except InputError as err:
        print(f"hpcdens {args.command}: error: {err}", file=sys.stderr)
        return 2
    except HpcdensError as err:
        print(f"hpcdens {args.command}: failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
