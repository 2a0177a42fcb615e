"""The ``hpcdens`` command. Each subcommand parses its options and calls into the package; the
logic lives in the modules. Input errors end with one message and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .checks import output_file
from .errors import HpcdensError, InputError

log = logging.getLogger("hpcdens")

def _cmd_structures(args) -> int:
    from .config import load_config
    from .plan import build_plan
    from .structures import write_structures

    config = load_config(args.config)
    out = output_file(args.out or Path(config.output.directory) / "structures.extxyz", args.overwrite,
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


def _cmd_generate(args) -> int:
    from mpi4py import MPI

    from .config import load_config
    from .generate import run_generate, summary_table

    comm = MPI.COMM_WORLD
    config = load_config(args.config)
    if not args.no_progress and not args.verbose:
        logging.getLogger("hpcdens.dft").setLevel(logging.WARNING)  # the progress bar reports
    out = Path(args.out or Path(config.output.directory) / "train.h5")
    if comm.rank == 0 and args.out is None:
        out.parent.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    summary = run_generate(config, out, comm, overwrite=args.overwrite, extend=args.extend,
                           retry_failed=args.retry_failed, progress=not args.no_progress)
    if comm.rank == 0:
        print(summary_table(out))
        for record in summary["failures"]:
            print(f"FAILED {record['key']}: {record['reason']}")
        print(f"{summary['snapshots']} of {summary['tasks']} snapshots labelled "
              f"({summary['labelled_now']} now, on {summary['ranks']} ranks), "
              f"{len(summary['failures'])} failed -> {out}")
    return 1 if summary["failures"] else 0


def _add_generate(sub):
    p = sub.add_parser("generate", help="label the structures of an input file with DFT (MPI)",
                       description="Label every (composition, snapshot) of CONFIG with the DFT "
                       "backend of [dft], farmed over the MPI ranks (mpirun -n N hpcdens generate "
                       "CONFIG), into one HDF5 training set (default <output.directory>/train.h5). "
                       "Killed and started again, it keeps every finished snapshot and labels only "
                       "the missing ones. Failed SCFs are reported and not stored.")
    p.add_argument("config", help="input file (TOML)")
    p.add_argument("--out", help="training-set file (.h5)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing training set and "
                   "its finished snapshots and start again")
    p.add_argument("--extend", action="store_true", help="add the snapshots missing from an "
                   "existing training set (e.g. after adding compositions)")
    p.add_argument("--retry-failed", action="store_true", help="label again the snapshots whose "
                   "SCF failed before")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)


def _cmd_bench(args) -> int:
    from .bench import REFERENCE_CELLS, bench_dft, format_dft_rows

    cells = args.cells or list(REFERENCE_CELLS)
    unknown = [c for c in cells if c not in REFERENCE_CELLS]
    if unknown:
        raise InputError(f"unknown benchmark cell(s) {unknown}; choose from {list(REFERENCE_CELLS)}")
    print(format_dft_rows([]), flush=True)
    for row in bench_dft(args.backends, cells):
        print(format_dft_rows([row]).splitlines()[-1], flush=True)
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="benchmarks that print figures",
                       description="Benchmarks. 'bench dft': one SCF per backend for Si8, an "
                       "8-atom SiGeSn cell and a 4-atom fcc CrFeCoNi cell; prints wall time, "
                       "SCF iterations, mesh and basis. 'bench predict': MPI prediction speed, "
                       "memory and phase timings.")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    dft = what.add_parser("dft", help="SCF wall time and iterations per backend and cell")
    dft.add_argument("--backends", nargs="+", default=["pyscf", "sparc"], choices=["pyscf", "sparc"])
    dft.add_argument("--cells", nargs="+", help="subset of Si8 Si4Ge2Sn2 CrFeCoNi")
    dft.set_defaults(func=_cmd_bench)
    from .bench_model import register_bench_bnn, register_bench_descriptors
    from .bench_predict import register_bench_predict

    register_bench_descriptors(what)
    register_bench_bnn(what)
    register_bench_predict(what)


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
    return parser


def _add_train(sub):
    from .train import register_train

    register_train(sub)


def _add_select_m(sub):
    from .train import register_select_m

    register_select_m(sub)


def _add_energy(sub):
    from .energy import register_energy

    register_energy(sub)


def _add_predict(sub):
    from .parallel.predict import register_predict

    register_predict(sub)


def _add_export(sub):
    from .export import register_export

    register_export(sub)


def _add_evaluate(sub):
    from .evaluate import register_evaluate

    register_evaluate(sub)


def _add_learn(sub):
    from .active import register_learn

    register_learn(sub)


def _add_learn_compare(sub):
    from .learn_compare import register_learn_compare

    register_learn_compare(sub)


COMMANDS = [_add_structures, _add_generate, _add_train, _add_select_m, _add_predict, _add_export,
            _add_energy, _add_evaluate, _add_learn, _add_learn_compare, _add_bench]


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
