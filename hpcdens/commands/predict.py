"""``hpcdens predict``: the domain-decomposed MPI prediction of a structure's density."""

from __future__ import annotations

from ..constants import DEFAULT_CHUNK_POINTS, DEFAULT_PRECISION, PHASES, PRECISIONS


def format_summary(summary: dict) -> str:
    """Human-readable lines of a :func:`run_predict` summary."""
    t = summary["timings"]
    phases = ", ".join(f"{p} {t[p]:.2f}" for p in PHASES)
    return (f"wrote {summary['out']}: grid {'x'.join(map(str, summary['grid_shape']))} "
            f"({summary['n_points']} points), {summary['n_atoms']} atoms, "
            f"{summary['n_ranks']} ranks (process grid {summary['process_grid']})\n"
            f"N_e = {summary['n_electrons']:g} ({summary['valence_source']}), integral of raw "
            f"rho = {summary['integral_rho_raw']:.6f}\n"
            + charge_line(summary)
            + f"halo grew {summary['halo_growths']} times in {summary['halo_blocks_grown']} blocks "
            f"(max radius {summary['halo_radius_max_bohr']:.2f} Bohr)\n"
            f"seconds (max over ranks): {phases}; peak RSS {summary['peak_rss_mb_max']:.0f} MB\n"
            + no_epistemic_line(summary)
            + reach_line(summary["uncertainty_calibration"], summary["out_of_reach_fraction"]))


def charge_line(summary: dict) -> str:
    """What rho_normalised is beyond Eq. 9: the atomic-charge correction's line, or how to get
    one for a model without a charge model ('' when it was turned off)."""
    corrected = summary.get("charge_correction")
    if corrected:
        return (f"rho_normalised corrected to the model's atomic charges: rms change "
                f"{corrected['charge_rmse_change']:.4f} e, max |lambda| "
                f"{corrected['lambda_max']:.3g}\n")
    if summary.get("charge_model"):
        return ""
    return ("rho_normalised is Eq. 9 alone: the model has no charge model ('hpcdens charges "
            "MODEL' fits one on its training snapshots, docs/charges.md)\n")


def no_epistemic_line(summary: dict) -> str:
    """A line saying that a one-sample prediction has no epistemic std ('' otherwise)."""
    if summary["n_samples"] > 1:
        return ""
    reach = (", and whether the structure is out of reach is not assessed"
             if summary["uncertainty_calibration"] else "")
    return (f"epistemic std: none from one weight sample (sample mode {summary['sample_mode']}); "
            f"the file has no epistemic_std field{reach}. Fix: --samples K with K >= 2 "
            "if you need them\n")


def reach_line(cal: dict | None, fraction: float) -> str:
    """The calibration and out-of-reach line of a prediction (a WARNING line when the fraction
    of flagged points exceeds the model's ``warn_fraction``)."""
    from ..calibration import describe

    return describe(cal, fraction)


def run(args) -> int:
    """``hpcdens predict`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..parallel.predict import run_predict

    comm = MPI.COMM_WORLD
    summary = run_predict(comm, args.model, args.structure, args.out,
                          spacing_bohr=args.spacing_bohr, shape=args.shape,
                          supercell=args.supercell, vacancies=args.vacancies, seed=args.seed,
                          chunk_points=args.chunk_points, overwrite=args.overwrite,
                          valence=args.valence, precision=args.precision, samples=args.samples,
                          save_samples=args.save_samples,
                          charge_correction=not args.no_charge_correction)
    if comm.rank == 0:
        print(format_summary(summary), flush=True)
    return 0


def register(sub):
    """Add the ``predict`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "predict", help="predict the density of a structure with a trained model (MPI)",
        description="Predict the electron density of STRUCTURE with the Bayesian network MODEL on "
        "a periodic real-space grid, domain-decomposed over the MPI ranks (mpirun/srun -n N "
        "hpcdens predict ...). Writes one HDF5 file: rho (predicted), rho_normalised (scaled to "
        "N_e valence electrons, Eq. 9, then corrected to the atomic charges of a model that "
        "has a charge model), epistemic_std, aleatoric_std (rho_sad for delta_rho "
        "models), the atoms, and the root attribute complete=True. See docs/commands/predict.md.")
    p.add_argument("model", help="model file written by 'hpcdens train'")
    p.add_argument("structure", help="structure file ASE reads (extxyz, cif, POSCAR, ...), "
                   "Angstrom; the last frame is used")
    p.add_argument("--out", required=True, help="output HDF5 file (e.g. pred.h5)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--spacing-bohr", type=float, metavar="H", help="grid spacing (Bohr); n_i "
                      "rounded up to odd numbers. Default: the model's training spacing")
    grid.add_argument("--shape", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                      help="explicit grid shape")
    p.add_argument("--supercell", type=int, nargs=3, metavar=("A", "B", "C"),
                   help="repeat the structure A x B x C times first")
    p.add_argument("--vacancies", type=int, default=0, metavar="N",
                   help="remove N random atoms (after --supercell)")
    p.add_argument("--seed", type=int, default=0, help="seed of the vacancy choice (default 0)")
    p.add_argument("--chunk-points", type=int, default=DEFAULT_CHUNK_POINTS, metavar="N",
                   help=f"grid points per streamed chunk; bounds memory per rank (default "
                   f"{DEFAULT_CHUNK_POINTS}, about 20 MB of descriptors at M = 55)")
    p.add_argument("--valence", metavar="SYM=N,...", help="valence electrons per element for "
                   "N_e (e.g. Si=4,Ge=4) when the model has no valence_electrons table; default "
                   "then: the valence charges of the DFT backend and settings the model records")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help=f"precision of the network pass (default {DEFAULT_PRECISION}, float32 is "
                   "about twice as fast as float64; "
                   "moments are accumulated in float64 either way, and the two agree to about "
                   "1e-6 of the target's spread)")
    p.add_argument("--samples", metavar="K|mean", help="fast-sample mode: the first K of the "
                   "model's N_s weight samples (K network passes instead of N_s; the epistemic std "
                   "from those K), or 'mean' for the posterior-mean network (one pass); default "
                   "all N_s. One sample (K = 1 or mean) has no epistemic std: the file then has "
                   "no epistemic_std field. Recorded as the file's sample_mode. See "
                   "docs/commands/predict.md for the measured cost in energy")
    p.add_argument("--save-samples", action="store_true", help="also write the density of each "
                   "weight sample used (datasets rho_sample_<j>, N_s times the size of rho): "
                   "'hpcdens energy' then reports the energy error bar")
    p.add_argument("--no-charge-correction", action="store_true", help="with a model that has "
                   "a charge model ('hpcdens charges'), write rho_normalised as Eq. 9 alone, "
                   "without moving each atom's Hirshfeld charge to the charge model's "
                   "(docs/charges.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)
    return p
