"""``hpcdens bench descriptors`` and ``hpcdens bench bnn``: single-core throughput of the two
compute kernels of a prediction (printed, never a test).

``bench descriptors``
    Grid points per second per core of :func:`hpcdens.descriptors.descriptors` on a rattled
    Si/Ge diamond supercell of about ``--atoms`` atoms (the cell of ``bench predict``), at
    ``--points`` uniformly random points of the cell. The time is split into the neighbour query
    (:meth:`NeighborSearch.query_shell`) and the descriptor assembly
    (:func:`hpcdens.descriptors.from_neighbors`: PCA frame, canonical order, features). The
    search is built once before the clock starts (as in a prediction, where it is built per block).

``bench bnn``
    Grid points per second per core of :func:`hpcdens.bnn.predict` with ``--samples`` weight
    samples of an untrained network (speed does not depend on the weights) of input width 5M and
    the given hidden layers. FLOPs per point per sample: ``2 * sum_l n_in(l) * n_out(l)`` over the
    layers (unpadded widths, output layer n_out = 2; activations, bias adds and the moments are not
    counted). The achieved rate is compared with plain ``torch.mm`` of the same layer shapes and
    row count measured in the same run, in float32 (the issue's reference) and in float64 (the
    precision ``predict`` computes in, and hence the fair reference: an fp64 matmul peaks at half
    the fp32 rate on AVX hardware).

Both run on one thread: ``torch.set_num_threads(1)``, KD-tree queries with one worker; numpy's
BLAS threads follow ``OMP_NUM_THREADS`` (set 1, as launch/env.sh does) and the value is printed.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .bench_predict import bench_atoms, near_cubic_supercell


def _threads_line() -> str:
    import torch

    return (f"one thread (torch threads {torch.get_num_threads()}, KD-tree workers 1, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def bench_descriptors(atoms: int = 64, m: int = 55, points: int = 20000, chunk: int = 4096,
                      seed: int = 0) -> dict:
    """Time the neighbour query and the descriptor assembly on ``points`` random points."""
    from ase.units import Bohr

    from .descriptors import from_neighbors
    from .neighbors import NeighborSearch

    supercell = near_cubic_supercell(max(1, math.ceil(atoms / 8)))
    cell = bench_atoms(supercell, seed)
    cell_bohr = cell.cell.array / Bohr
    search = NeighborSearch(cell.positions / Bohr, cell.numbers, cell_bohr, m=m)
    rng = np.random.default_rng(seed)
    pts = rng.random((points, 3)) @ cell_bohr
    search.query_shell(pts[:min(64, points)], m)  # grow the image set outside the clock
    t_query = t_desc = 0.0
    for start in range(0, points, chunk):
        p = pts[start:start + chunk]
        t0 = time.perf_counter()
        nb = search.query_shell(p, m)
        t1 = time.perf_counter()
        from_neighbors(nb, m)
        t2 = time.perf_counter()
        t_query += t1 - t0
        t_desc += t2 - t1
    total = t_query + t_desc
    return {"atoms": len(cell), "supercell": "x".join(map(str, supercell)), "m": m,
            "points": points, "query_s": t_query, "assembly_s": t_desc, "total_s": total,
            "points_per_s": points / total, "n_images": search.n_images}


def layer_shapes(n_in: int, hidden) -> list[tuple[int, int]]:
    """(n_in, n_out) of every layer, output layer of width 2 (mean and log variance)."""
    widths = [n_in, *hidden, 2]
    return list(zip(widths[:-1], widths[1:]))


def flops_per_point_sample(n_in: int, hidden) -> int:
    """2 * sum(n_in * n_out) over the layers."""
    return 2 * sum(a * b for a, b in layer_shapes(n_in, hidden))


def _matmul_rate(shapes, rows: int, dtype, repeats: int) -> float:
    """FLOP/s of plain torch.mm over the layer shapes (best of ``repeats`` passes)."""
    import torch

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(rows, a, generator=g, dtype=dtype) for a, _ in shapes]
    ws = [torch.randn(a, b, generator=g, dtype=dtype) for a, b in shapes]
    flops = 2 * rows * sum(a * b for a, b in shapes)
    for x, w in zip(xs, ws):
        torch.mm(x, w)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, w in zip(xs, ws):
            torch.mm(x, w)
        best = min(best, time.perf_counter() - t0)
    return flops / best


def bench_bnn(m: int = 55, hidden=(128, 128, 64), samples: int = 30, points: int = 8192,
              batch_size: int = 1024, seed: int = 0) -> dict:
    """Time :func:`bnn.predict`; FLOP rate and its fraction of fp32/fp64 torch.mm."""
    import torch

    from .bnn import build_model, predict
    from .config import ModelConfig

    torch.set_num_threads(1)
    n_in = 5 * m
    model = build_model(n_in, ModelConfig(hidden_layers=tuple(hidden)),
                        generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    model.fit_normalisation(rng.normal(size=(256, n_in)), rng.uniform(0, 0.1, 256))
    w = model.draw_weight_samples(samples, seed)
    x = rng.normal(size=(points, n_in))
    predict(model, x[:batch_size], w, batch_size)  # warm-up
    t0 = time.perf_counter()
    predict(model, x, w, batch_size)
    wall = time.perf_counter() - t0
    fps = flops_per_point_sample(n_in, hidden)
    rate = fps * samples * points / wall
    shapes = layer_shapes(n_in, hidden)
    fp32 = _matmul_rate(shapes, batch_size, torch.float32, 20)
    fp64 = _matmul_rate(shapes, batch_size, torch.float64, 20)
    return {"m": m, "hidden": list(hidden), "samples": samples, "points": points,
            "wall_s": wall, "points_per_s": points / wall, "flops_per_point_sample": fps,
            "gflops": rate / 1e9, "mm_fp32_gflops": fp32 / 1e9, "mm_fp64_gflops": fp64 / 1e9,
            "fraction_fp32": rate / fp32, "fraction_fp64": rate / fp64}


def format_descriptors(r: dict) -> str:
    return (f"descriptors, {_threads_line()}: {r['atoms']} atoms (supercell {r['supercell']}, "
            f"{r['n_images']} images), M={r['m']}, {r['points']} random points\n"
            f"  {r['points_per_s']:.0f} points/s/core; {r['total_s']:.2f} s = neighbour query "
            f"{r['query_s']:.2f} s ({100 * r['query_s'] / r['total_s']:.0f}%) + descriptor "
            f"assembly {r['assembly_s']:.2f} s ({100 * r['assembly_s'] / r['total_s']:.0f}%)")


def format_bnn(r: dict) -> str:
    return (f"bnn.predict, {_threads_line()}: n_in={5 * r['m']} (M={r['m']}), hidden "
            f"{r['hidden']}, N_s={r['samples']}, {r['points']} points, float64\n"
            f"  {r['points_per_s']:.0f} points/s/core ({r['wall_s']:.2f} s)\n"
            f"  FLOPs per point per sample = 2*sum(n_in*n_out) over layers = "
            f"{r['flops_per_point_sample']}\n"
            f"  achieved {r['gflops']:.2f} GFLOP/s; plain torch.mm of the same layer shapes "
            f"(1024 rows): fp32 {r['mm_fp32_gflops']:.2f} GFLOP/s, fp64 "
            f"{r['mm_fp64_gflops']:.2f} GFLOP/s\n"
            f"  fraction of fp32 matmul {100 * r['fraction_fp32']:.0f}% (issue target >= 50%); "
            f"of fp64 matmul {100 * r['fraction_fp64']:.0f}% (predict computes in float64, whose "
            f"peak is about half of fp32's, so this is the like-for-like figure)")


def _single_thread():
    import torch

    torch.set_num_threads(1)


def cmd_bench_descriptors(args) -> int:
    _single_thread()
    print(format_descriptors(bench_descriptors(args.atoms, args.m, args.points)), flush=True)
    return 0


def cmd_bench_bnn(args) -> int:
    _single_thread()
    print(format_bnn(bench_bnn(args.m, tuple(args.hidden), args.samples, args.points)),
          flush=True)
    return 0


def register_bench_descriptors(what):
    """Add ``descriptors`` to the subparsers of ``hpcdens bench``; returns the parser."""
    p = what.add_parser(
        "descriptors", help="single-core descriptor throughput",
        description="Points per second per core of the descriptors (one thread) on a rattled "
        "SiGe diamond supercell at random points, split into neighbour query and descriptor "
        "assembly. See docs/model.md (Benchmarks).")
    p.add_argument("--atoms", type=int, default=64, help="about this many atoms (default 64)")
    p.add_argument("--m", type=int, default=55, help="neighbours M (default 55)")
    p.add_argument("--points", type=int, default=20000, help="random points (default 20000)")
    p.set_defaults(func=cmd_bench_descriptors)
    return p


def register_bench_bnn(what):
    """Add ``bnn`` to the subparsers of ``hpcdens bench``; returns the parser."""
    p = what.add_parser(
        "bnn", help="single-core BNN prediction throughput and FLOP rate",
        description="Points per second per core of bnn.predict (one thread, float64) with N_s "
        "weight samples, FLOPs per point per sample (2*sum(n_in*n_out)), achieved FLOP rate and "
        "its fraction of plain fp32 and fp64 torch matmuls. See docs/model.md (Benchmarks).")
    p.add_argument("--m", type=int, default=55, help="neighbours M, input width 5M (default 55)")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 64],
                   help="hidden layer widths (default 128 128 64)")
    p.add_argument("--samples", type=int, default=30, help="N_s weight samples (default 30)")
    p.add_argument("--points", type=int, default=8192, help="points (default 8192)")
    p.set_defaults(func=cmd_bench_bnn)
    return p
