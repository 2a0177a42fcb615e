"""``hpcdens bench predict``: speed and memory of the MPI prediction (printed, never a test).

Times :func:`hpcdens.parallel.predict.predict_atoms` on a random SiGe diamond cell (rattled,
seeded, built in memory), the prediction file written as by ``hpcdens predict`` (into a temporary
directory, removed afterwards), and reports grid points per second, wall time per atom, peak RSS
per rank (``getrusage`` maximum over ranks) and the phase timings (maximum over ranks).
``--atoms-per-rank`` sizes the cell to the rank count (weak scaling), ``--supercell`` fixes it
(strong scaling). ``launch/strong_scaling.sh`` and ``launch/weak_scaling.sh`` run it over rank
counts, collect a CSV and plot it with :func:`plot_scaling` (``python -m hpcdens.commands.bench
plot ...``).

A model for benchmarks (untrained, random normalisation: speed does not depend on the weights)
comes from :func:`write_random_model` (``python -m hpcdens.commands.bench random-model PATH``).
"""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..descriptors import DESCRIPTOR_VERSION
from ..grid import DEFAULT_CHUNK_POINTS

CSV_FIELDS = ("label", "ranks", "atoms", "supercell", "grid", "points", "wall_s", "compute_cpu_s",
              "points_per_s",
              "s_per_atom", "peak_rss_mb_max", "halo_s", "descriptors_s", "network_s", "sad_s",
              "write_s", "setup_s", "reduce_s", "halo_growths")
LATTICE_A_ANGSTROM = 5.54  # Vegard, Si0.5Ge0.5


def write_random_model(path, m: int = 20, species=(14, 32), hidden_layers=(64, 64),
                       n_samples: int = 10, seed: int = 0, target: str = "rho"):
    """An untrained model with complete prediction metadata (for benchmarks and tests)."""
    import torch

    from ..bnn import build_model
    from ..config import ModelConfig
    from ..io.model import ModelRecord, save_model

    model = build_model(5 * m, ModelConfig(hidden_layers=tuple(hidden_layers)),
                        generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.choice(species, (256, m)), rng.uniform(0, 12, (256, m)),
                        rng.uniform(-1, 1, (256, 3 * m))], axis=1)
    model.fit_normalisation(x, rng.uniform(0.0, 0.1, 256))
    record = ModelRecord(n_neighbors=m, species=tuple(sorted(int(z) for z in species)),
                         target=target, n_samples=n_samples, sample_seed=seed,
                         descriptor_version=DESCRIPTOR_VERSION,
                         valence_electrons={int(z): 4.0 for z in species})
    return save_model(path, model, record)


def near_cubic_supercell(cells: int) -> tuple[int, int, int]:
    """Repetitions (a, b, c), a >= b >= c, with cells <= a*b*c <= 1.15 cells (or the fewest
    extra), the most cubic first, then the fewest extra cells."""
    best = None
    for a in range(1, int(round(cells ** (1 / 3))) + 2):
        for b in range(a, int(math.isqrt(max(cells // a, 1))) + 2):
            c = max(1, math.ceil(cells / (a * b)))
            extra = a * b * c - cells
            key = (extra > 0.15 * cells and extra, max(a, b, c) / min(a, b, c), extra)
            if best is None or key < best[0]:
                best = (key, tuple(sorted((a, b, c), reverse=True)))
    return best[1]


def bench_atoms(supercell, seed: int = 0, vacancy_cluster: int = 0,
                rattle_angstrom: float = 0.05):
    """Random Si/Ge diamond cell (50/50, rattled ``rattle_angstrom``, 0.05 Angstrom by default;
    0 gives the perfect crystal with the same species), ASE Atoms; with ``vacancy_cluster`` = n,
    the n atoms nearest the cell centre removed (a void, :func:`hpcdens.structures.add_void`)."""
    from ..structures import add_void, build_cell, decorate, rattle

    atoms = build_cell("diamond", LATTICE_A_ANGSTROM, tuple(supercell))
    n = len(atoms)
    rng = np.random.default_rng(seed)
    atoms = rattle(decorate(atoms, {"Si": n // 2, "Ge": n - n // 2}, rng), rattle_angstrom, rng)
    return add_void(atoms, vacancy_cluster) if vacancy_cluster else atoms


def bench_predict(comm, model, atoms_per_rank: int | None = None, supercell=None,
                  spacing_bohr: float = 0.6, chunk_points: int = DEFAULT_CHUNK_POINTS,
                  label: str = "", samples=None, vacancy_cluster: int = 0) -> dict:
    """One timed prediction on ``comm``; returns the result row (same on every rank).

    ``samples``: the fast-sample mode of ``hpcdens predict --samples`` (None: all N_s, K, or
    "mean"); ``vacancy_cluster``: atoms removed around the cell centre (:func:`bench_atoms`).
    Imports (torch: ~2 s) happen before the clock starts; ``setup_s`` is the rest of the set-up
    (model read and checked on rank 0, weight samples, broadcast, input checks)."""
    from .. import bnn  # noqa: F401 - torch is imported before the clock starts
    from ..io.model import with_samples
    from ..parallel.collective import allreduce, on_every_rank, on_root
    from ..parallel.predict import load_predictor, predict_atoms

    if supercell is None:
        supercell = near_cubic_supercell(math.ceil((atoms_per_rank or 64) * comm.size / 8))
    atoms = on_root(comm, bench_atoms, supercell, vacancy_cluster=vacancy_cluster)
    workdir = comm.bcast(tempfile.mkdtemp(prefix="hpcdens-bench-") if comm.rank == 0 else None)
    try:
        comm.Barrier()
        t0 = time.perf_counter()
        predictor = load_predictor(comm, model)
        if samples is not None:
            predictor = on_every_rank(comm, with_samples, predictor, samples)
        loaded = time.perf_counter() - t0
        s = predict_atoms(comm, atoms, predictor, spacing_bohr=spacing_bohr,
                          chunk_points=chunk_points, out=Path(workdir) / "pred.h5",
                          keep=False).summary
        wall = allreduce(comm, time.perf_counter() - t0, "max")
        loaded = allreduce(comm, loaded, "max")
    finally:
        comm.Barrier()
        if comm.rank == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    t = {**s["timings"], "setup": s["timings"]["setup"] + loaded}
    return {"label": label, "ranks": comm.size, "atoms": s["n_atoms"],
            "supercell": "x".join(map(str, supercell)), "grid": "x".join(map(str, s["grid_shape"])),
            "points": s["n_points"], "wall_s": wall, "compute_cpu_s": s["compute_cpu_s_sum"],
            "points_per_s": s["n_points"] / wall,
            "s_per_atom": wall / s["n_atoms"], "peak_rss_mb_max": s["peak_rss_mb_max"],
            **{f"{p}_s": t[p] for p in ("halo", "descriptors", "network", "sad", "write",
                                         "setup", "reduce")},
            "halo_growths": s["halo_growths"]}


def format_row(row: dict) -> str:
    return (f"{row['ranks']:>3} ranks  {row['atoms']:>6} atoms  grid {row['grid']:>11}  "
            f"{row['points_per_s']:>9.0f} points/s  {1e3 * row['s_per_atom']:8.3f} ms/atom  "
            f"peak RSS {row['peak_rss_mb_max']:6.0f} MB/rank | s: halo {row['halo_s']:.2f} "
            f"descriptors {row['descriptors_s']:.2f} network {row['network_s']:.2f} "
            f"write {row['write_s']:.2f} setup {row['setup_s']:.2f} (wall {row['wall_s']:.2f}, "
            f"compute CPU {row['compute_cpu_s']:.2f} summed over ranks)")


def append_csv(path, row: dict) -> None:
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as fd:
        writer = csv.DictWriter(fd, CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in CSV_FIELDS})






def read_scaling(csv_path, kind: str = "strong") -> dict:
    """{label: [(ranks, row, ratio)]} from a scaling CSV, best (smallest wall) row per (label,
    ranks). ratio: speed-up T_1 / T_n (strong) or efficiency (points_n / n / T_n) /
    (points_1 / T_1) (weak), against the 1-rank row of the same label (first row if none)."""
    with open(csv_path) as fd:
        rows = list(csv.DictReader(fd))
    out = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        best = {}
        for r in rows:
            n = int(r["ranks"])
            if r["label"] == label and (n not in best or float(r["wall_s"]) <
                                        float(best[n]["wall_s"])):
                best[n] = r
        base = best.get(1, best[min(best)])
        rate = float(base["points"]) / int(base["ranks"]) / float(base["wall_s"])
        out[label] = [(n, r, float(base["wall_s"]) / float(r["wall_s"]) if kind == "strong"
                       else float(r["points"]) / n / float(r["wall_s"]) / rate)
                      for n, r in sorted(best.items())]
    return out


def scaling_table(csv_path, kind: str = "strong") -> str:
    """Markdown table of a scaling CSV (ratios against the 1-rank row of the same run)."""
    head = "speed-up" if kind == "strong" else "efficiency"
    lines = [f"| cell | atoms | grid | ranks | wall s | {head} | compute CPU s (sum) | work vs "
             "1 rank | points/s | ms/atom | peak RSS MB/rank | halo s | descriptors s | "
             "network s | write s |", "|---" * 15 + "|"]
    for label, entries in read_scaling(csv_path, kind).items():
        base = entries[0][1]
        per_point = float(base["compute_cpu_s"]) / float(base["points"])
        for n, r, ratio in entries:
            work = float(r["compute_cpu_s"]) / float(r["points"]) / per_point
            lines.append(
                f"| {label} | {r['atoms']} | {r['grid']} | {n} | {float(r['wall_s']):.2f} | "
                f"{ratio:.2f} | {float(r['compute_cpu_s']):.2f} | {work:.2f} | "
                f"{float(r['points_per_s']):.0f} | "
                f"{1e3 * float(r['s_per_atom']):.2f} | {float(r['peak_rss_mb_max']):.0f} | "
                f"{float(r['halo_s']):.2f} | {float(r['descriptors_s']):.2f} | "
                f"{float(r['network_s']):.2f} | {float(r['write_s']):.2f} |")
    return "\n".join(lines)


def plot_scaling(csv_path, png_path, kind: str = "strong", cores: int | None = None) -> Path:
    """Plot a scaling CSV: speed-up (strong) or efficiency (weak) against ranks, one line per
    label (see :func:`read_scaling`), and the phase timings. ``cores``: the ideal line stops
    growing there (more ranks than cores are oversubscribed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_scaling(csv_path, kind)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    top = 1
    for label, entries in data.items():
        ranks = [n for n, _, _ in entries]
        top = max(top, *ranks)
        axes[0].plot(ranks, [ratio for _, _, ratio in entries], "o-", label=label)
        for phase, style in (("descriptors_s", "s-"), ("network_s", "^-"), ("write_s", "x-")):
            axes[1].plot(ranks, [float(r[phase]) for _, r, _ in entries], style,
                         label=f"{label} {phase[:-2]}")
    xs = list(range(1, top + 1))
    cap = [min(n, cores or n) for n in xs]
    ideal = cap if kind == "strong" else [c / n for c, n in zip(cap, xs)]
    axes[0].plot(xs, ideal, "k:", label=f"ideal on {cores} cores" if cores else "ideal")
    axes[0].set(xlabel="MPI ranks", ylabel="speed-up vs 1 rank" if kind == "strong" else
                "weak-scaling efficiency", title=f"{kind} scaling, hpcdens predict")
    axes[1].set(xlabel="MPI ranks", ylabel="seconds (max over ranks)", title="phases",
                yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return Path(png_path)
