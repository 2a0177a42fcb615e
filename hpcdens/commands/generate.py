"""``hpcdens generate``: DFT labels of an input file's structures, an MPI task farm."""

from __future__ import annotations

import logging
from pathlib import Path


def run(args) -> int:
    from mpi4py import MPI

    from ..config import load_config
    from ..labelling import run_generate, summary_table

    comm = MPI.COMM_WORLD
    config = load_config(args.config)
    if not args.no_progress and not args.verbose:
        logging.getLogger("hpcdens.dft").setLevel(logging.WARNING)  # the progress bar reports
    out = Path(args.out or Path(config.output.directory) / "train.h5")
    if comm.rank == 0 and args.out is None:
        out.parent.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    summary = run_generate(config, out, comm, overwrite=args.overwrite, extend=args.extend,
                           retry_failed=args.retry_failed, progress=not args.no_progress,
                           reuse=args.reuse)
    if comm.rank == 0:
        print(summary_table(out))
        for record in summary["failures"]:
            print(f"FAILED {record['key']}: {record['reason']}")
        print(f"{summary['snapshots']} of {summary['tasks']} snapshots labelled "
              f"({summary['labelled_now']} now, {summary['reused']} reused, "
              f"on {summary['ranks']} ranks), {len(summary['failures'])} failed -> {out}")
    return 1 if summary["failures"] else 0


def register(sub):
    p = sub.add_parser("generate", help="label the structures of an input file with DFT (MPI)",
                       description="Label every (composition, snapshot) of CONFIG with the DFT "
                       "backend of [dft], farmed over the MPI ranks (mpirun -n N hpcdens generate "
                       "CONFIG), into one HDF5 training set (default <output.directory>/train.h5). "
                       "Killed and started again, it keeps every finished snapshot and labels only "
                       "the missing ones. Failed SCFs are reported and not stored. --reuse copies "
                       "the labels of a pool made with the same [system], [snapshots] and [dft] "
                       "instead of computing them again.")
    p.add_argument("config", help="input file (TOML)")
    p.add_argument("--out", help="training-set file (.h5)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing training set and "
                   "its finished snapshots and start again")
    p.add_argument("--extend", action="store_true", help="add the snapshots missing from an "
                   "existing training set (e.g. after adding compositions)")
    p.add_argument("--retry-failed", action="store_true", help="label again the snapshots whose "
                   "SCF failed before")
    p.add_argument("--reuse", action="append", metavar="FILE.h5", help="label pool: a complete "
                   "training set made with the same [system], [snapshots] and [dft] settings; its "
                   "snapshots of this input file's compositions are copied, not labelled again "
                   "(repeatable; the first pool that holds a snapshot gives it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
