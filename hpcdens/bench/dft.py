"""``hpcdens bench``: benchmarks that print figures (never timed tests).

``bench dft`` times one SCF per backend for the reference cells (Si8, an 8-atom SiGeSn cell, a
64-atom SiGe cell, a 4-atom and a 32-atom fcc CrFeCoNi cell), so later benchmarks can state
prediction speed as a ratio to DFT measured in the same run (``launch/predict_vs_dft.sh``), and so
a study can be sized before it is labelled (the mesh spacing and basis can be overridden). Each row also gives the grid-charge error of the converged
density, |int rho dV - N_e| / N_e, which shows whether the mesh resolves the semicore states.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from ..config import DFTConfig
from ..dft import get_backend
from ..errors import DFTSetupError
from ..structures import build_cell, decorate, vegard_lattice_constant

_CRFECONI_A = {"Cr": 3.60, "Fe": 3.60, "Co": 3.54, "Ni": 3.52}
#: name -> (lattice, supercell, {element: count}, lattice constants in Angstrom, mesh spacing in Bohr)
REFERENCE_CELLS = {
    "Si8": ("diamond", 1, {"Si": 8}, {"Si": 5.431}, 0.4),
    "Si4Ge2Sn2": ("diamond", 1, {"Si": 4, "Ge": 2, "Sn": 2}, {"Si": 5.431, "Ge": 5.658, "Sn": 6.489}, 0.4),
    "SiGe64": ("diamond", 2, {"Si": 32, "Ge": 32}, {"Si": 5.431, "Ge": 5.658}, 0.4),
    "CrFeCoNi": ("fcc", 1, {"Cr": 1, "Fe": 1, "Co": 1, "Ni": 1}, _CRFECONI_A, 0.3),
    "CrFeCoNi32": ("fcc", 2, {"Cr": 8, "Fe": 8, "Co": 8, "Ni": 8}, _CRFECONI_A, 0.2),
}
#: The cells ``bench dft`` runs unless told otherwise (SiGe64 and CrFeCoNi32 take minutes per SCF).
DEFAULT_CELLS = ("Si8", "Si4Ge2Sn2", "CrFeCoNi")


def reference_atoms(name: str, seed: int = 0):
    """The benchmark cell ``name`` of :data:`REFERENCE_CELLS` (ASE Atoms, Angstrom), decorated with
    a fixed seed."""
    lattice, supercell, counts, constants, _ = REFERENCE_CELLS[name]
    n = sum(counts.values())
    a = vegard_lattice_constant({el: c / n for el, c in counts.items()}, constants)
    return decorate(build_cell(lattice, a, supercell), counts, np.random.default_rng(seed))


def bench_dft(backends=("pyscf", "sparc"), cells=DEFAULT_CELLS, base: DFTConfig = DFTConfig(),
              spacing_bohr: float | None = None):
    """Run one SCF per (backend, cell); yields result rows (dicts). ``base`` gives the settings
    (e.g. another basis); ``spacing_bohr`` replaces every cell's own mesh spacing. A backend that
    cannot be set up (e.g. SPARC without $ASE_SPARC_COMMAND) yields one row with the reason."""
    for name in backends:
        backend = get_backend(name)
        for cell in cells:
            settings = replace(base, backend=name, mesh_spacing_bohr=spacing_bohr or REFERENCE_CELLS[cell][4])
            atoms = reference_atoms(cell)
            try:
                r = backend.scf(atoms, settings)
            except DFTSetupError as err:
                yield {"backend": name, "cell": cell, "skipped": str(err)}
                break
            yield {"backend": name, "cell": cell, "atoms": len(atoms), "mesh": "x".join(map(str, r.grid.shape)),
                   "spacing_bohr": settings.mesh_spacing_bohr, "basis": r.settings.get("basis", "psp8"),
                   "iterations": r.n_iterations, "wall_s": r.wall_time_s, "converged": r.converged,
                   "charge_error": abs(r.grid.integrate(r.rho) - r.n_electrons) / r.n_electrons,
                   "ranks": settings.ranks_per_task if name == "sparc" else 1,
                   "threads": os.environ.get("OMP_NUM_THREADS", "all")}


def format_dft_rows(rows) -> str:
    lines = [f"{'backend':<8}{'cell':<11}{'atoms':>6}{'mesh':>11}{'h (Bohr)':>9}  {'basis':<20}"
             f"{'SCF iter':>9}{'wall s':>9}{'s/iter':>8}{'charge err':>11}"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['backend']:<8}skipped: {r['skipped']}")
            continue
        lines.append(f"{r['backend']:<8}{r['cell']:<11}{r['atoms']:>6}{r['mesh']:>11}{r['spacing_bohr']:>9.2f}  "
                     f"{r['basis']:<20}{r['iterations']:>9}{r['wall_s']:>9.2f}"
                     f"{r['wall_s'] / max(r['iterations'], 1):>8.2f}{r['charge_error']:>11.1e}" + ("" if r["converged"] else "  NOT CONVERGED"))
    return "\n".join(lines)
