"""``hpcdens select-m``: validation error against the number of neighbours M."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``select-m`` subcommand to an argparse ``add_subparsers`` object."""
    p = sub.add_parser(
        "select-m", help="validation NRMSE against the number of neighbours M (paper Fig. 12)",
        description="Train one network per value of M (descriptors.n_neighbors) on the same "
        "training sets, the same split by snapshot, the same sampled grid points and the same "
        "seeds, with the [model] and [train] settings of CONFIG, and report the best validation "
        "NRMSE of each: a text table, a CSV (default <output.directory>/select_m.csv) and a PNG "
        "plot next to it. Data parallel under mpirun -n N. Needs >= 2 snapshots and "
        "train.validation_fraction > 0. See docs/commands/select-m.md.")
    p.add_argument("config", help="input file (TOML)")
    p.add_argument("--m", nargs="+", type=int, required=True, metavar="M",
                   help="values of M to compare, e.g. --m 10 20 30 40 55 70")
    p.add_argument("--data", nargs="+", metavar="FILE", help="training-set files (.h5), "
                   "default <output.directory>/train.h5")
    p.add_argument("--out", metavar="CSV", help="CSV table, default "
                   "<output.directory>/select_m.csv; the plot goes to the same name with .png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV and PNG")
    p.add_argument("--progress", action="store_true", help="a progress bar per M")
    p.set_defaults(func=run)


def run(args) -> int:
    """``hpcdens select-m``: returns the exit code (0)."""
    from mpi4py import MPI

    from ..config import load_config
    from ..training.select_m import run_select_m

    run_select_m(load_config(args.config), args.m, args.data, args.out, MPI.COMM_WORLD,
                 overwrite=args.overwrite, progress=args.progress)
    return 0
