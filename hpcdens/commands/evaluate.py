"""``hpcdens evaluate``: prediction and Harris-Foulkes energy of every snapshot of a DFT test set."""

from __future__ import annotations

from pathlib import Path


# ----------------------------------------------------------------------------- command line
def run(args) -> int:
    """``hpcdens evaluate`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..evaluation import (
        COMPOSITION_PNG,
        CSV_NAME,
        JSON_NAME,
        PARITY_PNG,
        format_table,
        run_evaluate,
    )

    comm = MPI.COMM_WORLD
    settings = elements = None
    out = args.out
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
        settings, elements = config.dft, list(config.system.elements)
        out = out or Path(config.output.directory) / "evaluate"
    if out is None:
        from ..config import OutputConfig

        out = Path(OutputConfig().directory) / "evaluate"
    result = run_evaluate(comm, args.model, args.testset, out, settings=settings,
                          elements=elements, overwrite=args.overwrite, with_energy=args.energy,
                          energy_samples=args.energy_samples,
                          charge_correction=not args.no_charge_correction)
    if comm.rank == 0:
        print(format_table(result["rows"], result["summary"]))
        extra = f", {result['regions_csv']}" if result["regions_csv"] else ""
        print(f"results -> {result['out']}/ ({CSV_NAME}, {JSON_NAME}, {PARITY_PNG}, "
              f"{COMPOSITION_PNG}{extra})", flush=True)
    return 0


def register(sub):
    """Add the ``evaluate`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    import argparse

    p = sub.add_parser(
        "evaluate", help="evaluate a model on a DFT test set (densities and energies)",
        description="For every snapshot of TESTSET (a training-set file from 'hpcdens "
        "generate'): predict its density with MODEL on exactly the snapshot's grid (all ranks "
        "take part in each prediction), renormalise it to N_e (Eq. 9), compute its "
        "Harris-Foulkes energy (Eq. 10, free energy E - TS) and the energies of the weight "
        "samples' densities (their std is the error bar sigma_E; snapshot i on rank i %% N) and "
        "compare with the DFT label: energy error per atom and per electron and whether it lies "
        "within 2 sigma_E, density NRMSE and relative L1, the mean predicted epistemic and "
        "aleatoric std and the fraction of grid points within +-1/+-2 sigma; on cells with "
        "vacancies or "
        "segregation blocks also the density errors per distance shell around the vacancies and "
        "at the block faces. Writes a table, evaluate.csv, evaluate.json (rows and summary), "
        "parity.png, error_vs_composition.png and (for such cells) regions.csv to DIR. Run "
        "under mpirun -n N. See docs/commands/evaluate.md.")
    p.add_argument("model", metavar="MODEL", help="model file written by 'hpcdens train'")
    p.add_argument("testset", metavar="TESTSET", help="test set: an HDF5 training-set file from 'hpcdens generate'")
    p.add_argument("--config", help="input file (TOML): its [dft] section gives the DFT "
                   "settings of the energies (default: the model's recorded dft settings), its "
                   "system.elements the composition axis and output.directory the default DIR")
    p.add_argument("--out", metavar="DIR", help="output directory (default "
                   "<output.directory>/evaluate/, runs/hpcdens/evaluate without --config)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty "
                   "DIR (refused without it)")
    p.add_argument("--energy", action=argparse.BooleanOptionalAction, default=True,
                   help="compute the Harris-Foulkes energies (default); --no-energy gives the "
                   "density errors and uncertainties only")
    p.add_argument("--energy-samples", type=int, metavar="K", help="weight samples whose "
                   "Harris-Foulkes energies give the energy error bar (default: all N_s of the "
                   "model; 0: no error bar; each costs one Kohn-Sham step, about 1 s for 64 "
                   "atoms)")
    p.add_argument("--no-charge-correction", action="store_true", help="with a model that has "
                   "a charge model, evaluate Eq. 9 alone instead of the charge-corrected density "
                   "(to see what the correction does; docs/charges.md)")
    p.set_defaults(func=run)
    return p
