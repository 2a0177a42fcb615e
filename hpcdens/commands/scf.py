"""``hpcdens scf``: label a structure with DFT from a model's predicted density."""

from __future__ import annotations

import json


def run(args) -> int:
    """``hpcdens scf`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..io.files import output_file
    from ..seeded_scf import format_summary, run_seeded_scf

    comm = MPI.COMM_WORLD
    settings = None
    if args.config:
        from ..config import load_config

        settings = load_config(args.config).dft
    report = output_file(args.json, args.overwrite, "JSON file") if args.json else None
    summary = run_seeded_scf(comm, args.model, args.structure, args.out, settings=settings,
                             key=args.key, compare_default=args.compare_default,
                             overwrite=args.overwrite)
    if comm.rank == 0:
        print(format_summary(summary), flush=True)
        if report is not None:
            report.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return 0


def register(sub):
    """Add the ``scf`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "scf", help="DFT label of a structure, its SCF started from the model's prediction",
        description="Predict the density of STRUCTURE with MODEL on the DFT grid, renormalise it "
        "to N_e (Eq. 9), run the SCF from it (PySCF; the backend must be able to start from a "
        "density) and write the converged result as a one-snapshot training set (the format of "
        "'hpcdens generate') that 'hpcdens train' reads. The prediction may run on several ranks "
        "(mpirun -n N); the SCF runs on rank 0. See docs/commands/scf.md.")
    p.add_argument("model", metavar="MODEL", help="model file written by 'hpcdens train'")
    p.add_argument("structure", metavar="STRUCTURE", help="structure file ASE reads (Angstrom)")
    p.add_argument("--out", required=True, metavar="SET.h5", help="training set to write")
    p.add_argument("--key", help="snapshot key (default: the chemical formula)")
    p.add_argument("--config", help="input file whose [dft] section gives the DFT settings "
                   "(default: the model's recorded ones)")
    p.add_argument("--compare-default", action="store_true", help="also run the SCF from the "
                   "backend's default start and report the iterations saved")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)
    return p
