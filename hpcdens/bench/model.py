"""``hpcdens bench descriptors`` and ``hpcdens bench bnn``: single-core throughput of the two
compute kernels of a prediction (printed, never a test).

``bench descriptors``
    Grid points per second per core of :func:`hpcdens.descriptors.descriptors` on a rattled
    Si/Ge diamond supercell of about ``--atoms`` atoms (the cell of ``bench predict``), at the
    first ``--points`` points of its grid at ``--spacing`` Bohr in C order (what a prediction
    streams), at the same points of the unrattled cell (a perfect crystal: most points have
    equidistant neighbours or an axis sign that only the canonical rule fixes) and at as many
    uniformly random points of the rattled cell. The time is split into the neighbour query
    (:meth:`NeighborSearch.query_shell`) and the descriptor assembly
    (:func:`hpcdens.descriptors.from_neighbors`: PCA frame, canonical order, features). The
    search is built once before the clock starts (as in a prediction, where it is built per block).
    The same points also go through the reference path (``NeighborSearch(binned=False)``, the
    KD-tree for every point, and :func:`hpcdens.descriptors.from_neighbors_reference`), which
    gives the same descriptors; the ratio of the two is the speed-up of the binned search and the
    compiled kernels, measured in one run.

``bench bnn``
    Grid points per second per core of :func:`hpcdens.bnn_predict.predict` in float32 and in
    float64 with ``--samples`` weight samples of an untrained network (speed does not depend on
    the weights) of input width 5M and the given hidden layers. FLOPs per point per sample:
    ``2 * sum_l n_in(l) * n_out(l)`` over the layers (unpadded widths, output layer n_out = 2;
    activations, bias adds, padding and the moments are not counted). The achieved rates are
    compared with plain ``torch.mm`` of the same layer shapes (at 1024 rows and at the block rows
    of ``predict``, the faster counts) in float32 (the issue's reference) and in float64 (the
    like-for-like reference of the float64 path: an fp64 matmul peaks at half the fp32 rate on AVX
    hardware). Predictions and matmuls are timed in interleaved rounds and each figure is the best
    round, timed in CPU seconds of the process (``time.process_time``; one thread), so that load
    from other processes disturbs the ratios as little as possible.

Both run on one thread: ``torch.set_num_threads(1)``, KD-tree queries with one worker; numpy's
BLAS threads follow ``OMP_NUM_THREADS`` (set 1, as launch/env.sh does) and the value is printed.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .predict import bench_atoms, near_cubic_supercell


def _threads_line() -> str:
    import torch

    return (f"one thread (torch threads {torch.get_num_threads()}, KD-tree workers 1, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def bench_descriptors(atoms: int = 64, m: int = 55, points: int = 20000, spacing: float = 0.4,
                      chunk: int = 4096, seed: int = 0) -> dict:
    """Time the neighbour query and the descriptor assembly on ``points`` points of the cell's
    grid at ``spacing`` Bohr (the first ones in C order, chunk by chunk, as a prediction streams
    them) and on as many uniformly random points (no spatial coherence)."""
    from ase.units import Bohr

    from ..descriptors import from_neighbors, from_neighbors_reference
    from ..grid import Grid
    from ..neighbors import NeighborSearch

    supercell = near_cubic_supercell(max(1, math.ceil(atoms / 8)))
    cell = bench_atoms(supercell, seed)
    perfect = bench_atoms(supercell, seed, rattle_angstrom=0.0)   # same species, ideal sites
    cell_bohr = cell.cell.array / Bohr
    grid = Grid.from_spacing(cell_bohr, spacing)
    flat = np.arange(min(points, grid.size))
    on_grid = (np.stack(np.unravel_index(flat, grid.shape), 1) / grid.shape) @ cell_bohr
    sets = {"grid": (cell, on_grid), "perfect": (perfect, on_grid),
            "random": (cell, np.random.default_rng(seed).random((points, 3)) @ cell_bohr)}
    out = {"atoms": len(cell), "supercell": "x".join(map(str, supercell)), "m": m,
           "grid_shape": list(grid.shape), "spacing": spacing}
    for name, (structure, pts) in sets.items():
        for binned in (True, False):
            search = NeighborSearch(structure.positions / Bohr, structure.numbers, cell_bohr, m=m,
                                    binned=binned)
            out[name if binned else f"{name}_reference"] = _time_descriptors(
                search, pts, m, chunk, from_neighbors if binned else from_neighbors_reference)
        out["n_images"] = search.n_images
    return out


def _time_descriptors(search, pts: np.ndarray, m: int, chunk: int, from_neighbors) -> dict:
    from_neighbors(search.query_shell(pts[:min(64, len(pts))], m), m)  # warm up outside the clock
    t_query = t_desc = 0.0
    for start in range(0, len(pts), chunk):
        p = pts[start:start + chunk]
        t0 = time.perf_counter()
        nb = search.query_shell(p, m)
        t1 = time.perf_counter()
        from_neighbors(nb, m)
        t2 = time.perf_counter()
        t_query += t1 - t0
        t_desc += t2 - t1
    total = t_query + t_desc
    return {"points": len(pts), "query_s": t_query, "assembly_s": t_desc, "total_s": total,
            "points_per_s": len(pts) / total}


def layer_shapes(n_in: int, hidden) -> list[tuple[int, int]]:
    """(n_in, n_out) of every layer, output layer of width 2 (mean and log variance)."""
    widths = [n_in, *hidden, 2]
    return list(zip(widths[:-1], widths[1:]))


def flops_per_point_sample(n_in: int, hidden) -> int:
    """2 * sum(n_in * n_out) over the layers."""
    return 2 * sum(a * b for a, b in layer_shapes(n_in, hidden))


def _matmul_seconds(shapes, rows: int, dtype):
    """A timer of one pass of plain torch.mm over the layer shapes (inputs made once): returns
    the CPU seconds of the process (one thread: the time it computed, not the time other processes
    held the core)."""
    import torch

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(rows, a, generator=g, dtype=dtype) for a, _ in shapes]
    ws = [torch.randn(a, b, generator=g, dtype=dtype) for a, b in shapes]

    def one_pass() -> float:
        t0 = time.process_time()
        for x, w in zip(xs, ws):
            torch.mm(x, w)
        return time.process_time() - t0

    one_pass()
    return one_pass


def bench_bnn(m: int = 55, hidden=(128, 128, 64), samples: int = 30, points: int = 8192,
              batch_size: int | None = None, seed: int = 0, repeats: int = 3) -> dict:
    """Time :func:`predict` in float64 and float32; FLOP rates and their fractions of fp32 and
    fp64 torch.mm, all measured in one run, interleaved.

    ``repeats`` rounds, each timing ``predict`` on all ``points`` in both dtypes and 20 passes of
    each reference matmul; every figure is the best round. Rates are per CPU second of this
    process (``time.process_time``, one thread), so that time the core spent on other processes
    of a shared machine does not count; they still share caches and memory bandwidth, hence the
    best of interleaved rounds. ``wall_s`` is the wall time of the fastest round.
    The references are plain ``torch.mm`` of the layer shapes at 1024 rows and at the prediction's
    block rows; the faster of the two is the denominator. The top-level keys describe the float64
    prediction (the default); ``by_dtype`` holds both."""
    import torch

    from ..bnn import build_model
    from ..bnn_predict import DEFAULT_BLOCK_ROWS, predict
    from ..config import ModelConfig

    torch.set_num_threads(1)
    batch_size = int(batch_size or DEFAULT_BLOCK_ROWS)
    n_in = 5 * m
    model = build_model(n_in, ModelConfig(hidden_layers=tuple(hidden)),
                        generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    model.fit_normalisation(rng.normal(size=(256, n_in)), rng.uniform(0, 0.1, 256))
    w = model.draw_weight_samples(samples, seed)
    x = rng.normal(size=(points, n_in))
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    shapes = layer_shapes(n_in, hidden)
    ref_rows = sorted({1024, -(-batch_size // 16) * 16})
    refs = {(name, rows): _matmul_seconds(shapes, rows, dt)
            for name, dt in dtypes.items() for rows in ref_rows}
    for dt in dtypes.values():
        predict(model, x[:batch_size], w, batch_size, dtype=dt)  # warm-up
    cpu, wall = dict.fromkeys(dtypes, math.inf), dict.fromkeys(dtypes, math.inf)
    ref_s = dict.fromkeys(refs, math.inf)
    for _ in range(max(1, int(repeats))):
        for name, dt in dtypes.items():
            t0, c0 = time.perf_counter(), time.process_time()
            predict(model, x, w, batch_size, dtype=dt)
            c1, t1 = time.process_time(), time.perf_counter()
            if c1 - c0 < cpu[name]:
                cpu[name], wall[name] = c1 - c0, t1 - t0
        for key, one_pass in refs.items():
            ref_s[key] = min(ref_s[key], *(one_pass() for _ in range(20)))
    flops_pass = 2 * sum(a * b for a, b in shapes)
    mm = {name: max(flops_pass * rows / ref_s[(name, rows)] for rows in ref_rows)
          for name in dtypes}
    fps = flops_per_point_sample(n_in, hidden)
    by_dtype = {}
    for name in dtypes:
        rate = fps * samples * points / cpu[name]
        by_dtype[name] = {"cpu_s": cpu[name], "wall_s": wall[name],
                          "points_per_s": points / cpu[name],
                          "gflops": rate / 1e9, "fraction_fp32": rate / mm["float32"],
                          "fraction_fp64": rate / mm["float64"]}
    return {"m": m, "hidden": list(hidden), "samples": samples, "points": points,
            "batch_size": batch_size, "repeats": max(1, int(repeats)), "ref_rows": ref_rows,
            "dtype": "float64", **by_dtype["float64"], "flops_per_point_sample": fps,
            "mm_fp32_gflops": mm["float32"] / 1e9, "mm_fp64_gflops": mm["float64"] / 1e9,
            "by_dtype": by_dtype}


def format_descriptors(r: dict) -> str:
    lines = [f"descriptors, {_threads_line()}: {r['atoms']} atoms (supercell {r['supercell']}, "
             f"{r['n_images']} images), M={r['m']}"]
    for name, what in (("grid", f"grid points at {r['spacing']} Bohr (grid "
                                f"{'x'.join(map(str, r['grid_shape']))}, C order, as predict)"),
                       ("perfect", "grid points of the same cell unrattled (perfect crystal: "
                                   "distance ties, axis signs fixed by the canonical rule)"),
                       ("random", "random points")):
        t, ref = r[name], r[f"{name}_reference"]
        lines.append(f"  {t['points']} {what}: {t['points_per_s']:.0f} points/s/core; "
                     f"{t['total_s']:.2f} s = neighbour query {t['query_s']:.2f} s "
                     f"({100 * t['query_s'] / t['total_s']:.0f}%) + descriptor assembly "
                     f"{t['assembly_s']:.2f} s ({100 * t['assembly_s'] / t['total_s']:.0f}%)")
        lines.append(f"    reference path (KD-tree for every point, numpy descriptors): "
                     f"{ref['points_per_s']:.0f} points/s/core; binned + compiled kernels "
                     f"{t['points_per_s'] / ref['points_per_s']:.1f}x faster")
    return "\n".join(lines)


def format_bnn(r: dict) -> str:
    rows = " and ".join(str(n) for n in r["ref_rows"])
    lines = [f"bnn.predict, {_threads_line()}: n_in={5 * r['m']} (M={r['m']}), hidden "
             f"{r['hidden']}, N_s={r['samples']}, {r['points']} points, blocks of "
             f"{r['batch_size']} rows, best of {r['repeats']} interleaved rounds, rates per "
             f"CPU second",
             f"  FLOPs per point per sample = 2*sum(n_in*n_out) over layers = "
             f"{r['flops_per_point_sample']}",
             f"  plain torch.mm of the same layer shapes (best of {rows} rows): fp32 "
             f"{r['mm_fp32_gflops']:.2f} GFLOP/s, fp64 {r['mm_fp64_gflops']:.2f} GFLOP/s"]
    for name in ("float32", "float64"):
        d = r["by_dtype"][name]
        lines.append(f"  predict {name}: {d['points_per_s']:.0f} points/s/core ({d['cpu_s']:.2f} "
                     f"CPU s, {d['wall_s']:.2f} s wall), {d['gflops']:.2f} GFLOP/s = "
                     f"{100 * d['fraction_fp32']:.0f}% of fp32 matmul, "
                     f"{100 * d['fraction_fp64']:.0f}% of fp64 matmul")
    best = max(d["fraction_fp32"] for d in r["by_dtype"].values())
    lines.append(f"  issue target: >= 50% of fp32 matmul; best here {100 * best:.0f}% "
                 f"({'met' if best >= 0.5 else 'not met'}). The float64 figure is best read "
                 f"against fp64 matmul, whose peak is about half of fp32's")
    return "\n".join(lines)










