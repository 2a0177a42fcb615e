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

Everything that knows the layout of a prediction file is in :func:`read_prediction`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Bohr

from . import metrics
from .config import DFTConfig
from .dft import get_backend
from .errors import DFTFailed, InputError
from .grid import Grid

log = logging.getLogger("hpcdens.energy")

#: 1 kcal/mol: the paper's "chemical accuracy" in Ha/atom.
CHEMICAL_ACCURACY_HA_PER_ATOM = 1.6e-3
PREDICTION_FORMAT = "hpcdens-prediction"
DEFAULT_FIELD = "rho"
CONVENTION = ("E_HF = free energy E - T*S (Mermin, Eq. 10, as the SCF's free_energy_ha); "
              "energy_ha is E without the entropy term")
#: Relative deviation of the integral of rho from N_e above which a warning is logged.
CHARGE_WARN = 0.05


# ----------------------------------------------------------------------------- prediction file
@dataclass(frozen=True)
class Prediction:
    """A finished prediction file: ``atoms`` (Angstrom), the density ``rho`` (n1, n2, n3)
    e/Bohr^3 on ``grid`` (as stored, not renormalised), its root attributes ``attrs``."""

    path: Path
    field: str
    atoms: Atoms
    grid: Grid
    rho: np.ndarray
    attrs: dict


def _open_h5(path: Path, what: str):
    import h5py

    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist. Fix: check the path")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{what} {str(path)!r} is not a readable HDF5 file ({err})") from err


def read_prediction(path, field: str = DEFAULT_FIELD) -> Prediction:
    """Read an ``hpcdens predict`` file (schema: docs/commands/predict.md): the 3-D dataset
    ``field`` (default ``rho``, the raw prediction), ``atoms/{numbers, positions_bohr, cell_bohr,
    pbc}`` and the root attributes. Refuses files without the root attribute ``complete = True``
    (a prediction that did not finish) or of another format."""
    path = Path(path)
    with _open_h5(path, "prediction file") as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if not attrs.get("complete", False):
            raise InputError(f"{path} has no attribute complete=True: the prediction did not "
                             "finish (killed or failed). Fix: run 'hpcdens predict' again")
        if attrs.get("format", PREDICTION_FORMAT) != PREDICTION_FORMAT:
            raise InputError(f"{path} has format {attrs['format']!r}, not {PREDICTION_FORMAT!r}; "
                             "'hpcdens energy' reads files written by 'hpcdens predict'")
        fields = sorted(k for k, v in f.items() if getattr(v, "ndim", 0) == 3)
        if field not in fields:
            raise InputError(f"{path} has no density field {field!r}; its 3-D fields are "
                             f"{fields}. Fix: choose one with --field")
        if "atoms" not in f:
            raise InputError(f"{path} has no 'atoms' group; it is not an hpcdens prediction")
        g = f["atoms"]
        atoms = Atoms(numbers=g["numbers"][()], positions=g["positions_bohr"][()] * Bohr,
                      cell=g["cell_bohr"][()] * Bohr, pbc=g["pbc"][()])
        grid = Grid(g["cell_bohr"][()], f[field].shape)
        rho = np.asarray(f[field][()], dtype=np.float64)
    shape = attrs.get("grid_shape")
    if shape is not None and tuple(int(n) for n in np.ravel(shape)) != grid.shape:
        raise InputError(f"{path}: dataset {field!r} has shape {grid.shape} but the file's "
                         f"grid_shape attribute is {tuple(np.ravel(shape))}; the file is damaged")
    return Prediction(path, field, atoms, grid, rho, attrs)


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


# ----------------------------------------------------------------------------- N_e per backend
def _pyscf_valence(atoms, settings: DFTConfig) -> float:
    from .dft import pyscf_backend

    symbols = atoms.get_chemical_symbols()
    pyscf_backend.check_species(symbols, settings.basis, settings.pseudo)
    return float(pyscf_backend.valence_electrons(symbols, settings.pseudo))


def _sparc_valence(atoms, settings: DFTConfig) -> float:
    """Sum of the psp8 valence charges (zion: 2nd number of line 2 of each file)."""
    from .dft import sparc_backend as sb

    psp_dir = Path(settings.sparc_psp_dir) if settings.sparc_psp_dir else sb._bundled_psp_dir()
    zion = {}
    for symbol in sorted(set(atoms.get_chemical_symbols())):
        path = sb._find_psp(symbol, psp_dir)
        with open(path) as f:
            f.readline()
            zion[symbol] = float(f.readline().split()[1])
    return float(sum(zion[s] for s in atoms.get_chemical_symbols()))


VALENCE = {"pyscf": _pyscf_valence, "sparc": _sparc_valence}


def valence_electrons(atoms, settings: DFTConfig) -> float:
    """N_e of ``atoms`` for the backend ``settings.backend``: its pseudopotentials' valence
    charges summed (PySCF: GTH ``settings.pseudo``; SPARC: the psp8 files it would use)."""
    return VALENCE[settings.backend](atoms, settings)


# ----------------------------------------------------------------------------- energy
def energy_of_density(atoms, grid: Grid, rho, settings: DFTConfig, renormalise: bool = True,
                      n_electrons: float | None = None,
                      backend_options: dict | None = None) -> dict:
    """Harris-Foulkes energy of ``rho`` with the backend and settings of ``settings``.

    Parameters
    ----------
    atoms : ASE Atoms (Angstrom); grid : Grid of ``rho`` on the atoms' cell.
    rho : (n1, n2, n3) float64, e/Bohr^3; checked by :func:`check_density` first.
    settings : DFTConfig; ``settings.backend`` picks the code. With PySCF the mesh is
        ``grid.shape`` (``mesh_spacing_bohr`` is not used); SPARC gets ``FD_GRID = grid.shape``.
    renormalise : scale rho to N_e first (Eq. 9); otherwise use it as given.
    n_electrons : N_e; default: the backend's valence charge (:func:`valence_electrons`).
    backend_options : keyword arguments for the backend's ``harris_foulkes`` (SPARC: workdir,
        command, timeout_s).

    Returns
    -------
    dict (JSON-serialisable): free_energy_ha (E_HF, Ha, Mermin free energy: see the module
    docstring) and free_energy_per_atom_ha; energy_ha / energy_per_atom_ha (without entropy);
    entropy_term_ha (-T*S); fermi_level_ha; n_atoms; n_electrons; integral_e (before scaling);
    renormalisation_factor (1.0 when not renormalised); negative_charge_e; backend;
    wall_time_s (all of it) and backend_wall_time_s; settings (the backend's record); convention.
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
    result = get_backend(settings.backend).harris_foulkes(atoms, grid, rho, settings,
                                                          **(backend_options or {}))
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
        "settings": result.settings, "convention": CONVENTION}


_scale = renormalise  # energy_of_density's keyword ``renormalise`` shadows the function


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


def read_reference(path, key: str | None):
    """One snapshot of a training set (:class:`hpcdens.data.Snapshot`), read alone. ``key`` may
    be None when the set holds exactly one snapshot."""
    from .data import FORMAT, _read_snapshot

    path = Path(path)
    with _open_h5(path, "training set") as f:
        if f.attrs.get("format") != FORMAT or not f.attrs.get("complete", False):
            raise InputError(f"{path} is not a complete hpcdens training set (format "
                             f"{f.attrs.get('format')!r}); rerun 'hpcdens generate' to finish it")
        keys = json.loads(f.attrs["snapshot_keys"])
        if key is None and len(keys) == 1:
            key = keys[0]
        if key not in keys:
            shown = ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
            raise InputError(f"training set {path} has no snapshot {key!r}. Fix: give --key, one "
                             f"of: {shown}")
        return _read_snapshot(key, f["snapshots"][key])


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
    """InputError unless the reference was labelled with this backend, functional, smearing,
    (PySCF) basis and pseudopotentials, and the same N_e."""
    recorded = {"backend": reference.attrs.get("backend"), **reference.settings}
    mine = {"backend": settings.backend, "xc": settings.xc,
            "smearing_kelvin": settings.smearing_kelvin}
    if settings.backend == "pyscf":
        mine.update(basis=settings.basis, pseudo=settings.pseudo)
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
    """PySCF SCF of ``atoms`` on ``grid`` whose first input density is ``rho0`` (e/Bohr^3,
    renormalise it first), with the settings and convergence criteria of ``pyscf_backend.run``.
    Returns the :class:`~hpcdens.dft.base.DFTResult`."""
    from .dft import pyscf_backend

    check_density(atoms, grid, rho0)
    return pyscf_backend.run(atoms, settings, grid=grid, callback=callback, rho0=rho0)[0]


def _require_pyscf(settings: DFTConfig) -> None:
    if settings.backend != "pyscf":
        raise InputError("--scf-from-prediction needs the PySCF backend (SPARC has no entry "
                         "point for an initial density here). Fix: use --backend pyscf")


def scf_iterations_saved(atoms, grid: Grid, rho0, settings: DFTConfig) -> dict:
    """SCF iterations from ``rho0`` versus the backend's default start (PySCF ``minao``), same
    cell, grid and settings. Returns iteration counts, wall times, final energies, converged."""
    from .dft import pyscf_backend

    _require_pyscf(settings)
    seeded = scf_from_density(atoms, grid, rho0, settings)
    default = pyscf_backend.run(atoms, settings, grid=grid)[0]
    return {"iterations_default": default.n_iterations, "iterations_from_prediction":
            seeded.n_iterations, "iterations_saved": default.n_iterations - seeded.n_iterations,
            "wall_time_default_s": default.wall_time_s,
            "wall_time_from_prediction_s": seeded.wall_time_s,
            "energy_default_ha": default.energy_ha, "energy_from_prediction_ha": seeded.energy_ha,
            "converged": bool(default.converged and seeded.converged),
            "message": seeded.message or default.message}


# ----------------------------------------------------------------------------- command
def run_energy(path, settings: DFTConfig, reference=None, key=None, field: str = DEFAULT_FIELD,
               renormalise: bool = True, scf_from_prediction: bool = False) -> dict:
    """What ``hpcdens energy`` computes, as a JSON-serialisable dict. All inputs are checked
    (file, density, reference structure and settings) before any DFT work."""
    if scf_from_prediction:
        _require_pyscf(settings)
    pred = read_prediction(path, field)
    atoms, grid = pred.atoms, pred.grid
    check_density(atoms, grid, pred.rho)
    n_e = valence_electrons(atoms, settings)
    ref = None
    if reference is not None:
        ref = read_reference(reference, key)
        check_same_structure(atoms, grid, ref)
        check_same_settings(settings, ref, n_e)
    n_file = pred.attrs.get("n_electrons")
    if n_file is not None and abs(float(n_file) - n_e) > 1e-6:
        log.warning("the prediction was normalised to %g electrons, the %s pseudopotentials "
                    "have %g: using %g", n_file, settings.backend, n_e, n_e)
    energy = energy_of_density(atoms, grid, pred.rho, settings, renormalise, n_e)
    rho = _scale(pred.rho, grid, n_e)[0] if renormalise else pred.rho
    summary = {"prediction": str(pred.path), "field": field,
               "formula": atoms.get_chemical_formula(), **energy}
    if ref is not None:
        summary["reference"] = {"file": str(reference), "key": ref.key,
                                **compare_to_reference(energy, ref, rho)}
    if scf_from_prediction:
        summary["scf_from_prediction"] = scf_iterations_saved(atoms, grid, rho, settings)
    return summary


def format_report(s: dict) -> str:
    """Human-readable lines of a :func:`run_energy` summary."""
    lines = [f"{s['prediction']} [{s['field']}]: {s['formula']}, {s['n_atoms']} atoms, grid "
             f"{'x'.join(map(str, s['grid_shape']))}, N_e = {s['n_electrons']:g}",
             f"integral of rho = {s['integral_e']:.8g} e"
             + (f", renormalised by {s['renormalisation_factor']:.8f} (Eq. 9)"
                if s["renormalised"] else " (not renormalised)"),
             f"E_HF = {s['free_energy_per_atom_ha']:.8f} Ha/atom ({s['free_energy_ha']:.8f} Ha; "
             f"free energy E - TS, -TS = {s['entropy_term_ha']:.3e} Ha) [{s['backend']}]",
             f"Harris-Foulkes time {s['wall_time_s']:.2f} s"]
    if "reference" in s:
        r, e = s["reference"], s["reference"]["free_energy"]
        verdict = "within" if e["chemically_accurate"] else "NOT within"
        lines.append(f"reference {r['key']}: E_DFT = {r['reference_free_energy_per_atom_ha']:.8f} "
                     f"Ha/atom; error {e['error_ha_per_atom']:.3e} Ha/atom, "
                     f"{e['error_ha_per_electron']:.3e} Ha/electron ({verdict} chemical accuracy "
                     f"{CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom)")
        if "density" in r:
            lines.append(f"density: NRMSE {r['density']['nrmse']:.3e}, relative L1 "
                         f"{r['density']['relative_l1_percent']:.3f} %")
    if "scf_from_prediction" in s:
        c = s["scf_from_prediction"]
        lines.append(f"SCF from the prediction: {c['iterations_from_prediction']} iterations "
                     f"({c['wall_time_from_prediction_s']:.1f} s) vs {c['iterations_default']} "
                     f"from the default start ({c['wall_time_default_s']:.1f} s): "
                     f"{c['iterations_saved']} saved" + ("" if c["converged"] else
                                                         f" - NOT CONVERGED: {c['message']}"))
    return "\n".join(lines)


def _settings(args) -> DFTConfig:
    if args.config:
        from .config import load_config

        settings = load_config(args.config).dft
    else:
        settings = DFTConfig()
    return replace(settings, backend=args.backend) if args.backend else settings


def cmd_energy(args) -> int:
    """``hpcdens energy`` (argparse namespace -> exit code)."""
    from .checks import output_file

    if args.key and not args.reference:
        raise InputError("--key needs --reference TRAINSET (the training set holding the key)")
    out = output_file(args.json, args.overwrite, "JSON file") if args.json else None
    summary = run_energy(args.prediction, _settings(args), args.reference, args.key, args.field,
                         not args.no_renormalise, args.scf_from_prediction)
    print(format_report(summary), flush=True)
    if out is not None:
        out.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return 0


def register_energy(sub):
    """Add the ``energy`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "energy", help="Harris-Foulkes energy of a predicted density",
        description="Renormalise the density of a finished 'hpcdens predict' file to the N_e "
        "valence electrons of the backend's pseudopotentials (Eq. 9) and compute its "
        "Harris-Foulkes energy E_HF (Eq. 10, the free energy E - TS) with the DFT settings of "
        "CONFIG's [dft] section (default settings without --config). With --reference and --key, "
        "also the energy error per atom and per electron against that DFT snapshot (chemical "
        "accuracy: 1.6e-3 Ha/atom) and the density NRMSE and relative L1 error. Serial: run it "
        "without mpirun. See docs/commands/energy.md.")
    p.add_argument("prediction", help="HDF5 file written by 'hpcdens predict'")
    p.add_argument("--backend", choices=["pyscf", "sparc"],
                   help="DFT code (default: CONFIG's dft.backend, else pyscf)")
    p.add_argument("--config", help="input file (TOML) whose [dft] section gives the settings; "
                   "use the one that generated the training data")
    p.add_argument("--reference", metavar="TRAINSET", help="training set (from 'hpcdens "
                   "generate') holding a DFT label of the same structure on the same grid")
    p.add_argument("--key", help="snapshot key in TRAINSET (optional if it holds one snapshot)")
    p.add_argument("--field", default=DEFAULT_FIELD, help="density dataset of the prediction file "
                   "(default rho, the raw prediction; rho_normalised or rho_sad also work)")
    p.add_argument("--no-renormalise", action="store_true", help="use the density as stored, "
                   "without scaling it to N_e (Eq. 9); for diagnostics only")
    p.add_argument("--scf-from-prediction", action="store_true", help="PySCF only: also run an "
                   "SCF started from the predicted density and one from the default start on the "
                   "same cell, and report the SCF iterations saved")
    p.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    p.set_defaults(func=cmd_energy)
    return p
