"""``hpcdens learn``: active learning over the composition space."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``learn`` subcommand to an argparse ``add_subparsers`` object."""
    p = sub.add_parser(
        "learn", help="active learning over the composition space (bayesian, tessellation, random)",
        description="Active learning of CONFIG's density model ([learn] section): start from the "
        "pure elements, then per round label the new compositions with DFT (all their snapshots), "
        "train a new model and pick the next compositions: 'bayesian' takes the per_round "
        "candidates (simplex grid of candidate_resolution) of highest score = mean over "
        "score_structures structures of the mean over score_points random grid points of the "
        "epistemic standard deviation ([learn] score = 'energy': the std of the Harris-Foulkes "
        "energies of the N_s sample densities; [learn] pick = 'separated': each pick the highest "
        "score not a grid neighbour of an earlier pick); 'tessellation' adds T2 then T4; "
        "'random' draws seeded picks. Stops at max_rounds, max_compositions or "
        "uncertainty_threshold. Journal DIR/state.json: the same command after a kill resumes "
        "without relabelling (a killed training from its checkpoint). Writes DIR/train.h5, "
        "DIR/round_NN/model.pt, "
        "DIR/rounds.csv and plots. MPI: all ranks label, train and score. See "
        "docs/commands/learn.md.")
    p.add_argument("config", help="input file (TOML)")
    p.add_argument("--out", metavar="DIR", help="output directory, default "
                   "<output.directory>/learn (its parent must exist)")
    p.add_argument("--overwrite", action="store_true", help="delete DIR's earlier run and start "
                   "again (default: resume it)")
    p.add_argument("--reuse-labels", action="append", metavar="FILE.h5", help="label pool: a "
                   "complete training set made by 'hpcdens generate' with the same [system], "
                   "[snapshots] and [dft] settings; the snapshots of the chosen compositions it "
                   "holds are copied instead of labelled (repeatable)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    """``hpcdens learn``: returns the exit code (0)."""
    from mpi4py import MPI

    from ..config import load_config
    from ..learning.loop import learn_dir, run_learn
    from ..learning.report import write_report

    comm = MPI.COMM_WORLD
    config = load_config(args.config)
    state = run_learn(config, args.out, comm, overwrite=args.overwrite,
                      progress=not args.no_progress, reuse=args.reuse_labels)
    if comm.rank == 0:
        print(write_report(state, learn_dir(config, args.out), plots=not args.no_plots))
    return 0
