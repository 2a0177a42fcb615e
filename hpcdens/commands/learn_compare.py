"""``hpcdens learn-compare``: learning curves of learn runs on one DFT test set."""

from __future__ import annotations

from ..constants import CHEMICAL_ACCURACY_HA_PER_ATOM


# ----------------------------------------------------------------------------- command line
def run(args) -> int:
    """``hpcdens learn-compare`` (argparse namespace -> exit code)."""
    from mpi4py import MPI

    from ..learning.compare import output_names, run_compare
    from ..learning.compare_report import format_accuracy, format_spread, format_table

    comm = MPI.COMM_WORLD
    settings = elements = None
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
        settings, elements = config.dft, list(config.system.elements)
    result = run_compare(comm, args.testset, args.dirs, args.out, settings=settings,
                         elements=elements, overwrite=args.overwrite,
                         exclude_training=args.exclude_training, plots=not args.no_plots,
                         energy_samples=args.energy_samples,
                         charge_model=args.charge_model,
                         charge_correction=not args.no_charge_correction)
    if comm.rank == 0:
        print(format_table(result["rows"], result["exclude_training"]))
        print(format_accuracy(result["to_chemical_accuracy"]))
        spread = format_spread(result["seed_spread"])
        if spread:
            print(spread)
        csv_name, json_name, png_name = output_names(args.exclude_training)
        files = [csv_name, json_name] + ([] if args.no_plots else [png_name])
        copied = (f", {len(result['copied'])} copied from an equal model"
                  if result["copied"] else "")
        print(f"{len(result['evaluated'])} round(s) evaluated now, {len(result['reused'])} "
              f"reused from earlier runs{copied}; results -> {result['out']}/ "
              f"({', '.join(files)})", flush=True)
    return 0


def register(sub):
    """Add the ``learn-compare`` subcommand to ``sub`` (argparse subparsers); returns it."""
    p = sub.add_parser(
        "learn-compare", help="learning curves of active-learning runs on one DFT test set",
        description="Evaluate the model of every trained round of each learn directory DIR "
        "(the --out of 'hpcdens learn': state.json, round_NN/model.pt) on TESTSET (a "
        "training-set file from 'hpcdens generate') with 'hpcdens evaluate' (all ranks), into "
        "OUT/<DIR name>/round_NN/. Per DIR and round: number of training compositions, mean and "
        "max |Harris-Foulkes energy error| (Ha/atom, free energy E - TS) and mean and max "
        "density NRMSE over the test snapshots, and whether all are within chemical accuracy "
        f"({CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom). Writes a table, OUT/compare.csv, "
        "OUT/compare.json and OUT/learning_curves.png. Rounds evaluated before with the same "
        "model, test set and DFT settings are not evaluated again (a killed or repeated run "
        "resumes; a grown learn run evaluates only its new rounds). Run under mpirun -n N. See "
        "docs/commands/learn-compare.md.")
    p.add_argument("testset", metavar="TESTSET", help="test set: an HDF5 training-set file from "
                   "'hpcdens generate', the same for every DIR")
    p.add_argument("dirs", metavar="DIR", nargs="+", help="output directory of an 'hpcdens "
                   "learn' run (one strategy each)")
    p.add_argument("--out", metavar="OUT", required=True, help="output directory (its parent "
                   "must exist; an earlier comparison's OUT is reused)")
    p.add_argument("--config", help="input file (TOML): its [dft] section gives the DFT "
                   "settings of the energies (default: each model's recorded dft settings) and "
                   "system.elements the element order")
    p.add_argument("--overwrite", action="store_true", help="evaluate every round again "
                   "(ignore cached evaluations) and allow an OUT that is not empty and not a "
                   "comparison (other files in it are left alone)")
    p.add_argument("--no-plots", action="store_true", help="do not write learning_curves.png")
    p.add_argument("--energy-samples", type=int, default=0, metavar="K", help="weight samples "
                   "per snapshot for the energy error bar in each round's evaluation (default 0: "
                   "none; see 'hpcdens evaluate --energy-samples')")
    charges = p.add_mutually_exclusive_group()
    charges.add_argument("--charge-model", action="store_true", help="evaluate every round with "
                   "the atomic-charge correction (docs/charges.md): a round's model without a "
                   "charge model gets one fitted on its training snapshots ('hpcdens charges'), "
                   "written as OUT/<DIR name>/round_NN.charges.pt; the learn directories are "
                   "not changed")
    charges.add_argument("--no-charge-correction", action="store_true", help="evaluate every "
                         "round without the charge correction, also rounds whose model has a "
                         "charge model (the default evaluates each model as 'hpcdens evaluate' "
                         "does: with its charge model if it has one)")
    p.add_argument("--exclude-training", action="store_true", help="errors only over the test "
                   "snapshots whose composition (requested or realised) is not a training "
                   "composition of that round (default: all test snapshots)")
    p.set_defaults(func=run)
    return p
