"""The ``hpcdens`` command: builds the parser from :mod:`hpcdens.commands` and dispatches; the
logic lives in the modules. Input errors end with one message and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from . import __version__
from .commands import COMMANDS
from .errors import HpcdensError, InputError

log = logging.getLogger("hpcdens")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcdens",
        description="Bayesian neural-network electron densities of multi-element alloys on the "
        "real-space DFT grid. Run a subcommand with --help for its options; docs/ has a page each.")
    parser.add_argument("--version", action="version", version=f"hpcdens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


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


def run() -> None:
    """The console script ``hpcdens``: :func:`main`, then exit with its code. Before exiting,
    every object left (the millions that importing torch, numba and scipy create) is moved out
    of the cyclic garbage collector's reach, so that the interpreter's shutdown does not walk
    them all again: about 0.4-0.7 s of every command's exit on the 2-core test machine
    (docs/scaling.md). Exit handlers (MPI_Finalize) still run; only cyclic garbage is left to
    the process's end. In-process callers use :func:`main`, which does not touch the collector."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
