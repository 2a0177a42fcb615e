"""``hpcdens train``: the Bayesian network on training sets, data parallel over MPI, resumable."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``train`` subcommand to an argparse ``add_subparsers`` object."""
    p = sub.add_parser(
        "train", help="train the Bayesian neural network on training sets (MPI data parallel)",
        description="Train the Bayesian neural network of CONFIG ([descriptors], [model], "
        "[train]) on one or more training sets (default <output.directory>/train.h5): per "
        "snapshot, train.points_per_snapshot random grid points, descriptors with M = "
        "descriptors.n_neighbors, validation split by snapshot, Adam on the ELBO, early stopping "
        "on the validation loss. Writes the best model (default <output.directory>/model.pt) and, "
        "after every epoch, the checkpoint <model>.ckpt. Data parallel under mpirun -n N. "
        "See docs/commands/train.md.")
    p.add_argument("config", help="input file (TOML)")
    p.add_argument("--data", nargs="+", metavar="FILE", help="training-set files (.h5), "
                   "default <output.directory>/train.h5")
    p.add_argument("--out", metavar="MODEL", help="model file, default <output.directory>/model.pt")
    p.add_argument("--resume", action="store_true", help="continue from <MODEL>.ckpt (same data "
                   "and settings; [train] epochs and patience may be raised)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model and "
                   "discard an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """``hpcdens train``: returns the exit code (0)."""
    from mpi4py import MPI

    from ..config import load_config
    from ..training.run import run_train

    comm = MPI.COMM_WORLD
    s = run_train(load_config(args.config), args.data, args.out, comm, resume=args.resume,
                  overwrite=args.overwrite, progress=not args.no_progress)
    if comm.rank == 0:
        best = s["best"]
        print(f"trained on {s['n_train_points']} points of {s['n_train_snapshots']} snapshots "
              f"({s['ranks']} ranks, {s['epoch_time_s']:.2f} s/epoch), {s['epochs_run']} epochs"
              f"{' (early stop)' if s['stopped_early'] else ''}; best epoch {s['best_epoch']}"
              + (f"; {s['rollbacks']} loss spike(s) rolled back" if s["rollbacks"] else ""))
        if "nrmse" in best:
            print(f"validation ({s['n_validation_snapshots']} snapshots, "
                  f"{s['n_validation_points']} points): NRMSE {best['nrmse']:.4g} "
                  f"(training-mean predictor {best['baseline_nrmse']:.4g}), "
                  f"L1 {best['relative_l1_percent']:.3g} %")
        print(f"model -> {s['out']}")
    return 0
