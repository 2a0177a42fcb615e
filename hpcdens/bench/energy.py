"""``hpcdens bench energy``: what a Harris-Foulkes energy costs against the SCF of the same cell.

For one labelled snapshot it times, in one run and with the label's backend and settings: the SCF
as the labels were made (the baseline), the one-time set-up of the backend's Harris-Foulkes
evaluator (:func:`hpcdens.dft.harris_foulkes_evaluator`; zero for backends without one) and its
evaluation of several densities: the label's own and mixtures with the SAD, renormalised (Eq. 9),
standing in for the N_s sample densities of a prediction. Seconds, Ha; ratios to the SCF.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..dft import get_backend, harris_foulkes_evaluator, settings_from_record
from ..energy import renormalise
from ..errors import InputError
from ..io.training_set import read_snapshot


def bench_energy(path, key=None, n_densities: int = 5, run_scf: bool = True) -> dict:
    """Time a Harris-Foulkes set-up and ``n_densities`` evaluations on snapshot ``key`` of the
    training set ``path`` against its SCF (``run_scf``). Returns a dict of figures (s,
    Ha/atom)."""
    if n_densities < 1:
        raise InputError(f"--densities must be >= 1, got {n_densities}")
    snap = read_snapshot(path, key)
    atoms, grid = snap.atoms, snap.grid
    settings = settings_from_record({"backend": snap.attrs.get("backend"), **snap.settings})
    natm = len(atoms)
    row = {"key": snap.key, "atoms": natm, "mesh": "x".join(map(str, grid.shape)),
           "threads": os.environ.get("OMP_NUM_THREADS", "all")}
    backend = get_backend(settings.backend)
    if run_scf:
        if backend.make_grid(atoms, settings).shape != grid.shape:
            raise InputError(f"snapshot {snap.key!r} is on grid {grid.shape}, not the one its "
                             "settings give; its SCF cannot be repeated. Fix: pass --no-scf")
        scf = backend.scf(atoms, settings)
        row.update(scf_s=scf.wall_time_s, scf_iterations=scf.n_iterations)
    t0 = time.perf_counter()
    evaluator = harris_foulkes_evaluator(atoms, grid, settings)
    row["setup_s"] = time.perf_counter() - t0
    n_e = float(snap.attrs["n_electrons"])
    times, energies = [], []
    for t in np.linspace(0.0, 0.1, n_densities):
        rho = renormalise((1 - t) * snap.rho + t * snap.rho_sad, grid, n_e)[0]
        result = evaluator(rho)
        times.append(result.wall_time_s)
        energies.append(result.free_energy_ha)
    row.update(evaluation_s=float(np.median(times)), evaluations=n_densities,
               label_consistency_ha_per_atom=abs(energies[0] - snap.attrs["free_energy_ha"])
               / natm,
               spread_ha_per_atom=(max(energies) - min(energies)) / natm)
    if run_scf:
        row["first_energy_over_scf"] = (row["setup_s"] + times[0]) / row["scf_s"]
    return row


def format_energy_row(row: dict) -> str:
    """Human-readable lines for one :func:`bench_energy` row."""
    lines = [(f"snapshot {row['key']}: {row['atoms']} atoms, mesh {row['mesh']}, "
              f"OMP_NUM_THREADS={row['threads']}")]
    if "scf_s" in row:
        lines.append(f"  SCF as labelled                  {row['scf_s']:9.2f} s  "
                     f"({row['scf_iterations']} iterations)")
    lines.append(f"  Harris-Foulkes set-up (once)     {row['setup_s']:9.2f} s")
    lines.append(f"  each evaluation (median of {row['evaluations']})   {row['evaluation_s']:9.2f} s")
    if "first_energy_over_scf" in row:
        lines.append(f"  first energy / SCF               {row['first_energy_over_scf']:9.3f}")
    lines.append(f"  |E_HF(label density) - E_label|  {row['label_consistency_ha_per_atom']:9.2e} "
                 "Ha/atom")
    return "\n".join(lines)
