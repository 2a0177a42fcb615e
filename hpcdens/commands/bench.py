"""``hpcdens bench``: SCF cost, descriptor and network speed, prediction speed and memory.

``python -m hpcdens.commands.bench {predict,random-model,plot,table}`` is what the scaling
scripts in launch/ call."""

from __future__ import annotations

import argparse

from ..constants import DEFAULT_CHUNK_POINTS
from ..errors import InputError


def run_dft(args) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from ..bench.dft import (
        DEFAULT_CELLS,
        REFERENCE_CELLS,
        bench_dft,
        format_dft_rows,
        reference_atoms,
    )
    from ..config import DFTConfig

    cells = args.cells or list(DEFAULT_CELLS)
    unknown = [c for c in cells if c not in REFERENCE_CELLS]
    if unknown:
        raise InputError(f"unknown benchmark cell(s) {unknown}; choose from {list(REFERENCE_CELLS)}")
    if args.ranks < 1:
        raise InputError(f"--ranks {args.ranks}: must be >= 1 (SPARC's MPI ranks per SCF)")
    if args.structures:
        import ase.io

        Path(args.structures).mkdir(parents=True, exist_ok=True)
        for cell in cells:
            ase.io.write(Path(args.structures) / f"{cell}.extxyz", reference_atoms(cell))
    print(format_dft_rows([]), flush=True)
    base = replace(DFTConfig(), ranks_per_task=args.ranks,
                   **({"basis": args.basis} if args.basis else {}))
    rows = []
    for row in bench_dft(args.backends, cells, base, args.spacing):
        print(format_dft_rows([row]).splitlines()[-1], flush=True)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def run_energy(args) -> int:
    from ..bench.energy import bench_energy, format_energy_row

    row = bench_energy(args.training_set, args.key, args.densities, not args.no_scf)
    print(format_energy_row(row), flush=True)
    return 0


def register(sub):
    p = sub.add_parser("bench", help="benchmarks that print figures",
                       description="Benchmarks. 'bench dft': one SCF per backend for Si8, an "
                       "8-atom SiGeSn cell and a 4-atom fcc CrFeCoNi cell; prints wall time, "
                       "SCF iterations, mesh and basis. 'bench energy': Harris-Foulkes set-up and "
                       "evaluation against the SCF of a labelled cell. 'bench predict': MPI "
                       "prediction speed, memory and phase timings.")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    dft = what.add_parser("dft", help="SCF wall time and iterations per backend and cell")
    dft.add_argument("--backends", nargs="+", default=["pyscf", "sparc"], choices=["pyscf", "sparc"])
    dft.add_argument("--cells", nargs="+", help="subset of Si8 Si4Ge2Sn2 SiGe64 CrFeCoNi "
                     "CrFeCoNi32 (SiGe64: 64-atom Si0.5Ge0.5 diamond at 0.4 Bohr; CrFeCoNi32: "
                     "32-atom fcc, the paper's CrFeCoNi cell; neither in the default set)")
    dft.add_argument("--spacing", type=float, metavar="BOHR",
                     help="mesh spacing for every cell (default: each cell's own, 0.2-0.4 Bohr)")
    dft.add_argument("--basis", help="PySCF basis family (default gth-szv-molopt-sr)")
    dft.add_argument("--ranks", type=int, default=1, metavar="N",
                     help="MPI ranks of each SPARC SCF (dft.ranks_per_task; default 1). PySCF "
                     "runs in this process with OMP_NUM_THREADS threads")
    dft.add_argument("--json", metavar="OUT", help="also write the rows to this JSON file")
    dft.add_argument("--structures", metavar="DIR",
                     help="also write each cell as DIR/CELL.extxyz (to predict the same cell)")
    dft.set_defaults(func=run_dft)
    energy = what.add_parser("energy", help="Harris-Foulkes cost vs the SCF of a labelled cell",
                             description="Time, in one run, the SCF of a labelled snapshot with "
                             "its backend and settings, the Harris-Foulkes set-up and its "
                             "evaluation of several densities (docs/energy.md).")
    energy.add_argument("training_set", help="training-set file (hpcdens generate)")
    energy.add_argument("--key", help="snapshot key (default: the only one)")
    energy.add_argument("--densities", type=int, default=5,
                        help="densities evaluated after the set-up (default 5)")
    energy.add_argument("--no-scf", action="store_true", help="skip the SCF baseline")
    energy.set_defaults(func=run_energy)
    register_bench_descriptors(what)
    register_bench_bnn(what)
    register_bench_predict(what)


def _single_thread():
    import torch

    torch.set_num_threads(1)


def cmd_bench_descriptors(args) -> int:
    from ..bench.model import bench_descriptors, format_descriptors

    _single_thread()
    print(format_descriptors(bench_descriptors(args.atoms, args.m, args.points, args.spacing)),
          flush=True)
    return 0


def cmd_bench_bnn(args) -> int:
    from ..bench.model import bench_bnn, format_bnn

    _single_thread()
    print(format_bnn(bench_bnn(args.m, tuple(args.hidden), args.samples, args.points,
                               args.batch_size, repeats=args.repeats)), flush=True)
    return 0


def register_bench_descriptors(what):
    """Add ``descriptors`` to the subparsers of ``hpcdens bench``; returns the parser."""
    p = what.add_parser(
        "descriptors", help="single-core descriptor throughput",
        description="Points per second per core of the descriptors (one thread) on a rattled "
        "SiGe diamond supercell, at grid points (C order, as a prediction streams them) and at "
        "random points, split into neighbour query and descriptor assembly. See docs/model.md (Benchmarks).")
    p.add_argument("--atoms", type=int, default=64, help="about this many atoms (default 64)")
    p.add_argument("--m", type=int, default=55, help="neighbours M (default 55)")
    p.add_argument("--points", type=int, default=20000,
                   help="grid points, and as many random points (default 20000)")
    p.add_argument("--spacing", type=float, default=0.4, help="grid spacing, Bohr (default 0.4)")
    p.set_defaults(func=cmd_bench_descriptors)
    return p


def register_bench_bnn(what):
    """Add ``bnn`` to the subparsers of ``hpcdens bench``; returns the parser."""
    p = what.add_parser(
        "bnn", help="single-core BNN prediction throughput and FLOP rate",
        description="Points per second per core of bnn.predict (one thread) in float32 and "
        "float64 with N_s weight samples, FLOPs per point per sample (2*sum(n_in*n_out)), "
        "achieved FLOP rates and their fractions of plain fp32 and fp64 torch matmuls measured "
        "in the same run. See docs/model.md (Benchmarks).")
    p.add_argument("--m", type=int, default=55, help="neighbours M, input width 5M (default 55)")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 64],
                   help="hidden layer widths (default 128 128 64)")
    p.add_argument("--samples", type=int, default=30, help="N_s weight samples (default 30)")
    p.add_argument("--points", type=int, default=8192, help="points (default 8192)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per prediction block (default: bnn.predict's default)")
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved timing rounds; the best is reported (default 3)")
    p.set_defaults(func=cmd_bench_bnn)
    return p


def cmd_bench_predict(args) -> int:
    from mpi4py import MPI

    from ..bench.predict import append_csv, bench_predict, format_row

    comm = MPI.COMM_WORLD
    row = bench_predict(comm, args.model, args.atoms_per_rank, args.supercell, args.spacing_bohr,
                        args.chunk_points, args.label, args.samples, args.vacancy_cluster)
    if comm.rank == 0:
        print(format_row(row), flush=True)
        if args.csv:
            append_csv(args.csv, row)
    return 0


def register_bench_predict(bench_subparsers):
    """Add ``predict`` to the subparsers of ``hpcdens bench``; returns the parser."""
    p = bench_subparsers.add_parser(
        "predict", help="speed and memory of the MPI prediction",
        description="Time 'hpcdens predict' with MODEL on a random rattled SiGe diamond cell "
        "(mpirun -n N hpcdens bench predict MODEL). Prints points/s, ms per atom, peak RSS per "
        "rank (max over ranks) and phase timings (max over ranks). See docs/scaling.md.")
    p.add_argument("model", help="model file (any; python -m hpcdens.commands.bench random-model "
                   "PATH writes an untrained one)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--atoms-per-rank", type=int, help="weak scaling: cell of about this many "
                      "atoms per rank (default 64)")
    size.add_argument("--supercell", type=int, nargs=3, metavar=("A", "B", "C"),
                      help="strong scaling: fixed repetitions of the 8-atom cubic cell")
    p.add_argument("--spacing-bohr", type=float, default=0.6, help="grid spacing (default 0.6)")
    p.add_argument("--chunk-points", type=int, default=DEFAULT_CHUNK_POINTS)
    p.add_argument("--csv", help="append the result row to this CSV file")
    p.add_argument("--label", default="", help="label column of the CSV row")
    p.add_argument("--samples", metavar="K|mean", help="fast-sample mode, as 'hpcdens predict "
                   "--samples' (default all N_s)")
    p.add_argument("--vacancy-cluster", type=int, default=0, metavar="N",
                   help="remove the N atoms nearest the cell centre (default 0)")
    p.set_defaults(func=cmd_bench_predict)
    return p


def main(argv=None) -> int:
    """``python -m hpcdens.commands.bench {predict,random-model,plot,table}``, what the scaling
    scripts of launch/ call."""
    parser = argparse.ArgumentParser(prog="python -m hpcdens.commands.bench")
    sub = parser.add_subparsers(dest="what", required=True)
    register_bench_predict(sub)
    rm = sub.add_parser("random-model", help="write an untrained model for benchmarks")
    rm.add_argument("path")
    rm.add_argument("--m", type=int, default=20, help="neighbours M (default 20)")
    rm.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    rm.add_argument("--n-samples", type=int, default=10)
    for name in ("plot", "table"):
        q = sub.add_parser(name, help=f"{name} a scaling CSV")
        q.add_argument("csv")
        if name == "plot":
            q.add_argument("png")
        q.add_argument("--kind", choices=["strong", "weak"], default="strong")
        if name == "plot":
            q.add_argument("--cores", type=int, help="cores of the machine (caps the ideal line)")
    args = parser.parse_args(argv)
    if args.what == "predict":
        return args.func(args)
    from ..bench.predict import plot_scaling, scaling_table, write_random_model

    if args.what == "random-model":
        write_random_model(args.path, args.m, hidden_layers=args.hidden, n_samples=args.n_samples)
    elif args.what == "plot":
        plot_scaling(args.csv, args.png, args.kind, args.cores)
    else:
        print(scaling_table(args.csv, args.kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
