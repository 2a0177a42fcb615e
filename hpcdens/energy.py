"""``hpcdens energy``: the Harris-Foulkes energy of a predicted density (paper Eqs. 9-10).

A predicted density is judged by the energy it gives: scaled to the N_e valence electrons of the
backend's pseudopotentials (Eq. 9, :func:`renormalise`), it builds one Kohn-Sham Hamiltonian with
the same code and settings as the training labels, and the Harris-Foulkes energy (Eq. 10) of that
step (the backend's ``harris_foulkes``) is compared with the DFT energy of the same structure.
"Chemically accurate" means within :data:`CHEMICAL_ACCURACY_HA_PER_ATOM` of DFT.

Energy convention: E_HF is the **Mermin free energy** E - T*S (Eq. 10 includes the electronic
entropy term; it is what the smeared SCF minimises, ``DFTResult.free_energy_ha``, SPARC's "Total
free energy"). Only the free energy is stationary at the SCF density, so only its error is second
order in the density error; the energy without entropy (``energy_ha``, also reported) has a first
order part wherever T*S is not negligible (measured in docs/energy.md).

Units: atomic (Bohr, Ha, e/Bohr^3) throughout; ASE ``Atoms`` in Angstrom at the interface. The
command is serial (one process reads the file and runs PySCF in-process, or starts SPARC with
``dft.ranks_per_task`` ranks); do not launch it under mpirun.

Prediction and training-set files are read through :mod:`hpcdens.io`.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from ase.units import Bohr

from . import metrics
from .config import DFTConfig
from .constants import CHEMICAL_ACCURACY_HA_PER_ATOM, DEFAULT_FIELD
from .dft import (
    get_backend,
    harris_foulkes_evaluator,
    valence_electrons,
)
from .errors import DFTFailed, InputError
from .grid import Grid
from .io.prediction import read_prediction
from .io.training_set import read_snapshot

log = logging.getLogger("hpcdens.energy")

CONVENTION = ("E_HF = free energy E - T*S (Mermin, Eq. 10, as the SCF's free_energy_ha); "
              "energy_ha is E without the entropy term")
#: Relative deviation of the integral of rho from N_e above which a warning is logged.
CHARGE_WARN = 0.05


# ----------------------------------------------------------------------------- density checks
def check_density(atoms, grid: Grid, rho) -> dict:
    """Check that ``rho`` can be given to a backend; raises :class:`InputError` naming the problem
    and the fix before any energy is computed.

    atoms : ASE Atoms (Angstrom) with a 3-D periodic cell.
    grid : Grid whose ``cell_bohr`` must equal ``atoms.cell`` in Bohr to 1e-6 Bohr.
    rho : (n1, n2, n3) float64, e/Bohr^3, shape ``grid.shape``, finite, positive integral.

    Returns {"integral_e": int rho dV, "min_e_per_bohr3", "negative_charge_e": int min(rho, 0)}.
    """
    rho = np.asarray(rho)
    if len(atoms) == 0:
        raise InputError("the structure has no atoms; a Harris-Foulkes energy needs some")
    if rho.shape != grid.shape:
        raise InputError(f"the density has shape {rho.shape} but the grid is {grid.shape}. Fix: "
                         "give the density on the grid it was predicted on (same n1, n2, n3)")
    if not np.isfinite(rho).all():
        bad = int(np.size(rho) - np.count_nonzero(np.isfinite(rho)))
        raise InputError(f"the density has {bad} NaN or inf values of {rho.size}. Fix: "
                         "recompute the prediction (a NaN usually comes from a diverged model)")
    cell = np.asarray(atoms.cell.array, dtype=float) / Bohr
    diff = float(np.abs(cell - grid.cell_bohr).max())
    if diff > 1e-6:
        raise InputError(f"the density's cell differs from the atoms' cell by up to {diff:.3g} "
                         f"Bohr (grid {np.round(grid.cell_bohr, 6).tolist()}, atoms "
                         f"{np.round(cell, 6).tolist()} Bohr). Fix: use the density predicted "
                         "for these atoms, or Grid(atoms.cell / Bohr, shape)")
    integral = grid.integrate(rho)
    if not integral > 0:
        raise InputError(f"the density integrates to {integral:.6g} e, not > 0, so it cannot be "
                         "renormalised to N_e (Eq. 9). Fix: check the model and the prediction")
    dv = grid.voxel_volume_bohr3
    return {"integral_e": integral, "min_e_per_bohr3": float(rho.min()),
            "negative_charge_e": float(np.minimum(rho, 0.0).sum() * dv)}


def renormalise(rho, grid: Grid, n_electrons: float):
    """Eq. 9: rho * N_e / int rho dV. Returns (scaled rho (n1, n2, n3) e/Bohr^3, factor).
    Raises InputError if the integral is not > 0 or ``n_electrons`` is not > 0."""
    if not n_electrons > 0:
        raise InputError(f"N_e must be > 0 to renormalise a density, got {n_electrons}")
    integral = grid.integrate(rho)
    if not integral > 0:
        raise InputError(f"the density integrates to {integral:.6g} e, not > 0; it cannot be "
                         "renormalised to N_e (Eq. 9)")
    factor = float(n_electrons) / integral
    return np.asarray(rho, dtype=float) * factor, factor


# ----------------------------------------------------------------------------- energy
def energy_of_density(atoms, grid: Grid, rho, settings: DFTConfig, renormalise: bool = True,
                      n_electrons: float | None = None,
                      backend_options: dict | None = None, evaluator=None) -> dict:
    """Harris-Foulkes energy of ``rho`` with the backend and settings of ``settings``.

    Parameters
    ----------
    atoms : ASE Atoms (Angstrom); grid : Grid of ``rho`` on the atoms' cell.
    rho : (n1, n2, n3) float64, e/Bohr^3; checked by :func:`check_density` first.
    settings : DFTConfig; ``settings.backend`` picks the code. With PySCF the mesh is
        ``grid.shape`` (``mesh_spacing_bohr`` is not used); SPARC gets ``FD_GRID = grid.shape``.
    renormalise : scale rho to N_e first (Eq. 9); otherwise use it as given.
    n_electrons : N_e; default: the backend's valence charges summed
        (:func:`hpcdens.dft.valence_electrons`).
    backend_options : keyword arguments for the backend's ``harris_foulkes`` (SPARC: workdir,
        command, timeout_s).
    evaluator : a :func:`hpcdens.dft.harris_foulkes_evaluator` of these atoms and grid, to reuse
        its set-up across densities; made here when None.

    Returns
    -------
    dict (JSON-serialisable): free_energy_ha (E_HF, Ha, Mermin free energy: see the module
    docstring) and free_energy_per_atom_ha; energy_ha / energy_per_atom_ha (without entropy);
    entropy_term_ha (-T*S); fermi_level_ha; n_atoms; n_electrons; integral_e (before scaling);
    renormalisation_factor (1.0 when not renormalised); negative_charge_e; backend;
    wall_time_s (all of it), backend_wall_time_s (the evaluation) and setup_wall_time_s (the
    evaluator's one-time set-up, whether made here or before); settings (the backend's record);
    convention.
    """
    t0 = time.perf_counter()
    checked = check_density(atoms, grid, rho)
    n_e = float(valence_electrons(atoms, settings) if n_electrons is None else n_electrons)
    factor = 1.0
    if renormalise:
        rho, factor = _scale(rho, grid, n_e)
    elif abs(checked["integral_e"] / n_e - 1) > CHARGE_WARN:
        log.warning("density integrates to %.6g e but N_e = %g and it is not renormalised: the "
                    "cell is charged and its energy is not comparable", checked["integral_e"], n_e)
    if evaluator is None:
        evaluator = harris_foulkes_evaluator(atoms, grid, settings, **(backend_options or {}))
    result = evaluator(rho)
    if abs(result.n_electrons - n_e) > 1e-6 * n_e:
        raise DFTFailed(f"the backend counted {result.n_electrons} valence electrons but the "
                        f"density was scaled to {n_e}; pass n_electrons={result.n_electrons}")
    natm = len(atoms)
    return {
        "backend": settings.backend, "n_atoms": natm, "n_electrons": n_e,
        "free_energy_ha": result.free_energy_ha,
        "free_energy_per_atom_ha": result.free_energy_ha / natm,
        "energy_ha": result.energy_ha, "energy_per_atom_ha": result.energy_ha / natm,
        "entropy_term_ha": result.free_energy_ha - result.energy_ha,
        "fermi_level_ha": result.fermi_level_ha, "renormalised": bool(renormalise),
        "renormalisation_factor": factor, **checked, "grid_shape": list(grid.shape),
        "wall_time_s": time.perf_counter() - t0, "backend_wall_time_s": result.wall_time_s,
        "setup_wall_time_s": float(evaluator.setup_wall_time_s),
        "settings": result.settings, "convention": CONVENTION}


_scale = renormalise  # energy_of_density's keyword ``renormalise`` shadows the function


def energy_per_atom(atoms, grid: Grid, settings: DFTConfig, n_electrons: float, evaluator=None):
    """A callable rho -> the Harris-Foulkes free energy per atom (Ha) of rho renormalised to
    ``n_electrons`` (Eq. 9), all calls sharing one set-up (``evaluator``, made here when None)."""
    evaluator = evaluator or harris_foulkes_evaluator(atoms, grid, settings)

    def energy(rho):
        return energy_of_density(atoms, grid, rho, settings, n_electrons=n_electrons,
                                 evaluator=evaluator)["free_energy_ha"] / len(atoms)

    return energy


# ----------------------------------------------------------------------------- reference
def energy_errors(e_pred: float, e_ref: float, n_atoms: int, n_electrons: float) -> dict:
    """Signed difference (Ha), |error| per atom and per electron (metrics module), and whether
    it is within chemical accuracy (<= 1.6e-3 Ha/atom)."""
    per_atom = metrics.energy_error_per_atom(e_pred, e_ref, n_atoms)
    return {"difference_ha": float(e_pred - e_ref), "error_ha_per_atom": per_atom,
            "error_ha_per_electron": metrics.energy_error_per_electron(e_pred, e_ref, n_electrons),
            "chemically_accurate": bool(per_atom <= CHEMICAL_ACCURACY_HA_PER_ATOM)}


def density_errors(rho_pred, rho_ref) -> dict:
    """{"nrmse", "relative_l1_percent"} of rho_pred against rho_ref (same shapes)."""
    return {"nrmse": metrics.nrmse(rho_pred, rho_ref),
            "relative_l1_percent": metrics.relative_l1_percent(rho_pred, rho_ref)}


def compare_to_reference(energy: dict, reference, rho=None) -> dict:
    """Errors of an :func:`energy_of_density` result against a DFT snapshot.

    reference : :class:`hpcdens.data.Snapshot` of the same structure (attrs energy_ha,
        free_energy_ha); rho : the evaluated (renormalised) density, for the density errors.
    Returns {"free_energy": energy_errors of E_HF vs the reference free energy, "energy": the
    same without entropy, "reference_free_energy_per_atom_ha", and, with ``rho``, "density"}.
    """
    n_atoms, n_e = energy["n_atoms"], energy["n_electrons"]
    ref = reference.attrs
    out = {"reference_free_energy_per_atom_ha": ref["free_energy_ha"] / n_atoms,
           "free_energy": energy_errors(energy["free_energy_ha"], ref["free_energy_ha"], n_atoms,
                                        n_e),
           "energy": energy_errors(energy["energy_ha"], ref["energy_ha"], n_atoms, n_e)}
    if rho is not None:
        out["density"] = density_errors(rho, reference.rho)
    return out


def check_same_structure(atoms, grid: Grid, reference) -> None:
    """InputError unless ``reference`` (Snapshot) has the same species, cell, positions (modulo
    lattice vectors, 1e-6 Bohr) and grid shape as the prediction."""
    what = f"reference snapshot {reference.key!r}"
    if list(atoms.numbers) != list(reference.atoms.numbers):
        raise InputError(f"{what} has other atoms ({reference.atoms.get_chemical_formula()}) "
                         f"than the prediction ({atoms.get_chemical_formula()}, same order "
                         "needed). Fix: give the key of the structure that was predicted")
    cell = atoms.cell.array / Bohr
    frac = (atoms.positions - reference.atoms.positions) / Bohr @ np.linalg.inv(cell)
    shift = float(np.linalg.norm((frac - np.round(frac)) @ cell, axis=1).max())
    cell_diff = float(np.abs(cell - reference.grid.cell_bohr).max())
    if cell_diff > 1e-6 or shift > 1e-6:
        raise InputError(f"{what} differs from the predicted structure (cell by {cell_diff:.3g} "
                         f"Bohr, positions by up to {shift:.3g} Bohr). Fix: give the key of the "
                         "structure that was predicted")
    if reference.grid.shape != grid.shape:
        shape = " ".join(map(str, reference.grid.shape))
        raise InputError(f"{what} is on grid {reference.grid.shape}, the prediction on "
                         f"{grid.shape}. Fix: predict with --shape {shape}")


def check_same_settings(settings: DFTConfig, reference, n_electrons: float) -> None:
    """InputError unless the reference was labelled with this backend, the same label settings
    (the backend's ``label_settings``: functional, smearing, PySCF basis and pseudopotentials)
    and the same N_e."""
    recorded = {"backend": reference.attrs.get("backend"), **reference.settings}
    mine = {"backend": settings.backend, **get_backend(settings.backend).label_settings(settings)}
    differ = [f"{k} = {v!r} here, {recorded[k]!r} in the reference" for k, v in mine.items()
              if k in recorded and not _same(v, recorded[k])]
    n_ref = reference.attrs.get("n_electrons", n_electrons)
    if abs(n_ref - n_electrons) > 1e-6:
        differ.append(f"N_e = {n_electrons:g} here, {n_ref:g} in the reference")
    if differ:
        raise InputError(f"the reference snapshot {reference.key!r} was computed with other DFT "
                         f"settings: {'; '.join(differ)}. Fix: pass --config with the [dft] "
                         "section (and --backend) that generated the training set")


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return str(a).upper() == str(b).upper()


# ----------------------------------------------------------------------------- SCF restart
def scf_from_density(atoms, grid: Grid, rho0, settings: DFTConfig, callback=None):
    """SCF of ``atoms`` on ``grid`` whose first input density is ``rho0`` (e/Bohr^3, renormalise
    it first), with the settings and convergence criteria of the backend's ``scf``. Returns the
    :class:`~hpcdens.dft.base.DFTResult`."""
    check_density(atoms, grid, rho0)
    return get_backend(settings.backend).scf_from_density(atoms, grid, settings, rho0=rho0,
                                                          callback=callback)


def scf_iterations_saved(atoms, grid: Grid, rho0, settings: DFTConfig, seeded=None) -> dict:
    """SCF iterations from ``rho0`` versus the backend's default start (PySCF ``minao``, SPARC the
    psp8 atomic superposition), same cell, grid and settings; ``seeded``: the SCF from ``rho0``
    when already run (its :class:`~hpcdens.dft.base.DFTResult`). Returns iteration counts, wall
    times, final energies (and free energies), converged."""
    seeded = seeded or scf_from_density(atoms, grid, rho0, settings)
    default = get_backend(settings.backend).scf_from_density(atoms, grid, settings)
    return {"iterations_default": default.n_iterations, "iterations_from_prediction":
            seeded.n_iterations, "iterations_saved": default.n_iterations - seeded.n_iterations,
            "wall_time_default_s": default.wall_time_s,
            "wall_time_from_prediction_s": seeded.wall_time_s,
            "energy_default_ha": default.energy_ha, "energy_from_prediction_ha": seeded.energy_ha,
            "free_energy_default_ha": default.free_energy_ha,
            "free_energy_from_prediction_ha": seeded.free_energy_ha,
            "converged": bool(default.converged and seeded.converged),
            "message": seeded.message or default.message}


# ----------------------------------------------------------------------------- command
def _error_bar(pred, settings: DFTConfig, n_electrons: float, evaluator) -> dict | None:
    """sigma_E (Ha/atom) from the prediction file's sample densities (``predict
    --save-samples``), scaled by the model's energy calibration recorded in the file; None when
    the file has fewer than two samples."""
    import json

    from .io.prediction import read_sample_densities
    from .uncertainty import energy_scale, energy_spread

    samples = read_sample_densities(pred.path)
    if len(samples) < 2:
        return None
    spread = energy_spread(samples, energy_per_atom(pred.atoms, pred.grid, settings,
                                                    n_electrons, evaluator))
    cal = json.loads(pred.attrs.get("uncertainty_calibration_json", '"uncalibrated"'))
    scale = energy_scale(cal)
    return {"sigma_per_atom_ha": spread["sigma_per_atom_ha"] * scale,
            "sigma_raw_per_atom_ha": spread["sigma_per_atom_ha"], "energy_scale": scale,
            "calibrated": isinstance(cal, dict) and "energy_scale" in cal,
            "n_samples": spread["n_samples"]}



def run_energy(path, settings: DFTConfig, reference=None, key=None, field: str = DEFAULT_FIELD,
               renormalise: bool = True, scf_from_prediction: bool = False) -> dict:
    """What ``hpcdens energy`` computes, as a JSON-serialisable dict. All inputs are checked
    (file, density, reference structure and settings) before any DFT work."""
    pred = read_prediction(path, field)
    atoms, grid = pred.atoms, pred.grid
    check_density(atoms, grid, pred.rho)
    n_e = valence_electrons(atoms, settings)
    ref = None
    if reference is not None:
        ref = read_snapshot(reference, key)
        check_same_structure(atoms, grid, ref)
        check_same_settings(settings, ref, n_e)
    n_file = pred.attrs.get("n_electrons")
    if n_file is not None and abs(float(n_file) - n_e) > 1e-6:
        log.warning("the prediction was normalised to %g electrons, the %s pseudopotentials "
                    "have %g: using %g", n_file, settings.backend, n_e, n_e)
    evaluator = harris_foulkes_evaluator(atoms, grid, settings)
    energy = energy_of_density(atoms, grid, pred.rho, settings, renormalise, n_e,
                               evaluator=evaluator)
    rho = _scale(pred.rho, grid, n_e)[0] if renormalise else pred.rho
    summary = {"prediction": str(pred.path), "field": field,
               "charge_corrected": field == "rho_normalised"
               and bool(pred.attrs.get("charge_corrected", False)),
               "formula": atoms.get_chemical_formula(), **energy,
               "error_bar": _error_bar(pred, settings, n_e, evaluator)}
    if ref is not None:
        summary["reference"] = {"file": str(reference), "key": ref.key,
                                **compare_to_reference(energy, ref, rho)}
    if scf_from_prediction:
        summary["scf_from_prediction"] = scf_iterations_saved(atoms, grid, rho, settings)
    return summary


