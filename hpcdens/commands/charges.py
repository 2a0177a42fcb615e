"""``hpcdens charges``: fit a model's atomic-charge model on its training snapshots."""

from __future__ import annotations


def run(args) -> int:
    """``hpcdens charges`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..charge_correction import run_fit_charges

    comm = MPI.COMM_WORLD
    res = run_fit_charges(comm, args.model, args.out, data=args.data, shells_bohr=args.shells)
    if comm.rank == 0:
        print(f"charge model: {res['n_atoms']} atoms of {res['n_snapshots']} training snapshots "
              f"(Hirshfeld charges rms {res['charge_rms']:.4f} e), cross-validated error "
              f"{res['cv_rmse']:.4f} e (alpha {res['alpha']:g}, gamma {res['gamma']:g})"
              + (f", per radial shell {', '.join(f'{e:.4f}' for e in res['shell_cv_rmse'])} e"
                 if res["shell_cv_rmse"] else "")
              + f", {res['wall_time_s']:.0f} s; written into {args.out or args.model}", flush=True)
    return 0


def register(sub):
    """Add the ``charges`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "charges", help="fit the atomic-charge model of a model on its training snapshots",
        description="Compute the Hirshfeld charges of the DFT densities of the model's training "
        "and validation snapshots (recorded by 'hpcdens train'), fit a kernel model of them on "
        "each atom's surroundings and store it in the model file. predict (its rho_normalised, "
        "which energy reads), evaluate (so learn-compare) and scf then correct each atom's "
        "charge of the predicted density to the model's after Eq. 9. Run under mpirun -n N. "
        "See docs/charges.md.")
    p.add_argument("model", metavar="MODEL", help="model file written by 'hpcdens train'")
    p.add_argument("--out", help="write the model with its charge model here (default: "
                   "replace MODEL)")
    p.add_argument("--data", nargs="+", metavar="FILE", help="the training files, in the "
                   "order 'hpcdens train' was given them (default: the paths it recorded)")
    p.add_argument("--shells", nargs="+", type=float, metavar="R", default=(),
                   help="also fit one charge model per radial shell of every atom, on the hats "
                   "with nodes 0 and these radii in Bohr (e.g. 0.3 0.6 1.0 1.6), and correct "
                   "each shell's charge: for semicore delta-rho models (docs/charges.md, "
                   "'Radial shells')")
    p.set_defaults(func=run)
    return p
