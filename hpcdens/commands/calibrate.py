"""``hpcdens calibrate``: fit a model's uncertainty calibration on its validation snapshots."""

from __future__ import annotations

import json


def run(args) -> int:
    """``hpcdens calibrate`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..calibration import describe, run_calibrate

    comm = MPI.COMM_WORLD
    settings = None
    if args.config:
        from ..config import load_config

        settings = load_config(args.config).dft
    cal = run_calibrate(comm, args.model, args.out, data=args.data,
                        energy_samples=args.energy_samples, settings=settings)
    if comm.rank == 0:
        shown = {k: v for k, v in cal.items() if k not in ("method", "fitted_on")}
        print(json.dumps(shown, indent=1))
        print(describe(cal))
        print(f"calibration written into {args.out or args.model}", flush=True)
    return 0


def register(sub):
    """Add the ``calibrate`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "calibrate", help="fit the uncertainty calibration of a model on its validation snapshots",
        description="Predict the model's validation snapshots (recorded by 'hpcdens train'), "
        "compare with their DFT labels and store in the model file: the scale of the density "
        "std (68.3%% of the validation grid points within +-1 sigma), the scale of the energy "
        "error bar (sqrt(mean z^2) of the validation energies) and the out-of-reach threshold "
        "(99.9%% quantile of the raw epistemic std). predict, evaluate and learn-compare apply "
        "them. Run under mpirun -n N. See docs/uncertainty.md.")
    p.add_argument("model", metavar="MODEL", help="model file written by 'hpcdens train'")
    p.add_argument("--out", help="write the calibrated model here (default: replace MODEL)")
    p.add_argument("--data", nargs="+", metavar="FILE", help="the training files, in the "
                   "order 'hpcdens train' was given them (default: the paths it recorded)")
    p.add_argument("--energy-samples", type=int, metavar="K", help="weight samples per "
                   "validation snapshot for the energy scale (default: all N_s; 0: none)")
    p.add_argument("--config", help="input file whose [dft] section gives the energies' DFT "
                   "settings (default: the model's recorded ones)")
    p.set_defaults(func=run)
    return p
