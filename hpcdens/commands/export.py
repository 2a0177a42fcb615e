"""``hpcdens export``: a field of a prediction file as a Gaussian cube."""

from __future__ import annotations

from ..constants import EXPORT_FIELD, LENGTH_DECIMALS


def run(args) -> int:
    """``hpcdens export`` (argparse namespace -> exit code)."""
    from ..io.prediction import export_cube

    path = export_cube(args.prediction, args.cube, args.field, args.overwrite, args.digits)
    print(f"wrote {args.field} of {args.prediction} to {path}")
    return 0


def register(sub):
    """Add the ``export`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "export", help="write a field of a prediction as a Gaussian cube file",
        description="Write one field of a finished 'hpcdens predict' file as a Gaussian cube "
        f"(lengths in Bohr with {LENGTH_DECIMALS} decimals, values in e/Bohr^3), readable by ASE "
        "and usable as SPARC's INPUT_DENS_FILE. Streams the field slab by slab, so the grid is "
        "never held in memory whole. Run it serially (no mpirun).")
    p.add_argument("prediction", help="HDF5 file written by 'hpcdens predict'")
    p.add_argument("--cube", required=True, help="output cube file")
    p.add_argument("--field", default=EXPORT_FIELD, help="dataset to export: rho_normalised "
                   "(default; integrates to N_e), rho, epistemic_std, aleatoric_std, rho_sad")
    p.add_argument("--digits", type=int, default=17, help="significant digits per value "
                   "(default 17: exact float64; 7 is SPARC's own precision)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cube file")
    p.set_defaults(func=run)
    return p
