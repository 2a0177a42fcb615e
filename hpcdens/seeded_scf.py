"""``hpcdens scf``: label a structure with DFT, starting the SCF from a model's predicted density.

The workflow of a user who needs the DFT answer for a cell the model has not seen (issue #17):
predict the density on exactly the DFT grid (:func:`hpcdens.parallel.predict.predict_atoms`, in
memory), renormalise it to N_e (Eq. 9), run the backend's SCF from it (``scf_from_density``), and
store the converged result as a one-snapshot training set that ``hpcdens train`` and ``evaluate``
read like any other (``hpcdens generate``'s format), so the cell can be fed back into training.
With ``compare_default`` the same SCF from the backend's own start is run too and both iteration
counts, wall times and energies are reported. A model whose valence electrons per element differ
from the backend's pseudopotentials is refused (:func:`check_valence`).

Units: Bohr, Ha, e/Bohr^3; ASE Atoms in Angstrom. Serial (one process runs the SCF).
"""

from __future__ import annotations

import logging
import time

from ase.data import atomic_numbers

from . import energy as en
from .charge_correction import correct_density
from .dft import (
    atomic_density,
    check_mesh_resolves,
    get_backend,
    settings_from_record,
    valence_electrons,
)
from .errors import DFTFailed, InputError
from .io import training_set as data
from .io.files import output_file
from .metrics import nrmse

log = logging.getLogger("hpcdens.scf")

FORMAT_SOURCE = "hpcdens scf (SCF started from a model's prediction)"


def run_seeded_scf(comm, model, structure, out, *, settings=None, key: str | None = None,
                   compare_default: bool = False, overwrite: bool = False) -> dict:
    """Predict ``structure`` (a file ASE reads, Angstrom) with ``model`` on the backend's DFT grid,
    run the SCF from the prediction and write the label to the training set ``out`` under ``key``
    (default: the structure's formula). ``settings``: DFTConfig (default: the model's recorded
    dft settings). ``comm``: the communicator of the prediction (the SCF runs on its rank 0 only;
    give MPI.COMM_SELF for a serial run). All inputs are checked before any work; an SCF that does
    not converge writes nothing and raises :class:`DFTFailed`. Returns the summary (dict)."""
    from .parallel.collective import on_root
    from .parallel.inputs import build_structure
    from .parallel.predict import gather_fields, load_predictor, predict_atoms

    t0 = time.perf_counter()
    predictor = load_predictor(comm, model)
    settings = settings or settings_from_record(predictor.record.dft)

    def check():
        path = output_file(out, overwrite, "training set")
        atoms = build_structure(structure)
        check_mesh_resolves(atoms, sorted(set(atoms.get_chemical_symbols())), settings)
        check_valence(predictor.record.valence_electrons, atoms, settings)
        backend = get_backend(settings.backend)
        backend.check_ready(settings)
        grid = backend.make_grid(atoms, settings)
        return path, atoms, grid, key or atoms.get_chemical_formula()

    path, atoms, grid, name = on_root(comm, check)
    prediction = predict_atoms(comm, atoms if comm.rank == 0 else None, predictor,
                               shape=grid.shape, structure_info={"path": str(structure)})
    fields = gather_fields(comm, prediction, ["rho"])
    predict_s = time.perf_counter() - t0
    return on_root(comm, _label, atoms, grid, fields, settings, path, name, predictor,
                   compare_default, predict_s, str(structure))


def check_valence(table: dict | None, atoms, settings) -> None:
    """InputError when the model's valence electrons per element (``table``, {Z: electrons}; None:
    not recorded, nothing to check) differ from those of the backend's pseudopotentials: a
    density of 4-electron Ge renormalised to SPARC's 14-electron Ge would start the SCF without
    the semicore shell."""
    if not table:
        return
    symbols = sorted(set(atoms.get_chemical_symbols()))
    charges = get_backend(settings.backend).valence_charges(symbols, settings)
    differ = [f"{s} {table[atomic_numbers[s]]:g} vs {charges[s]:g}" for s in symbols
              if atomic_numbers[s] in table and abs(table[atomic_numbers[s]] - charges[s]) > 1e-9]
    if differ:
        raise InputError(f"the model was trained on densities with other valence electrons than "
                         f"the {settings.backend} pseudopotentials give ({', '.join(differ)}): its "
                         "prediction is no start for this SCF. Fix: use the DFT settings the "
                         "model was trained with (leave out --config) or a model trained on "
                         f"{settings.backend} labels")


def _label(atoms, grid, fields, settings, path, key, predictor, compare_default, predict_s,
           structure) -> dict:
    """Rank 0: the SCF from the prediction, the training-set entry and the comparison."""
    n_e = valence_electrons(atoms, settings)
    rho0 = en.renormalise(fields["rho"], grid, n_e)[0]
    if predictor.record.charges:                # the model's atomic charges (docs/charges.md)
        rho0 = correct_density(rho0, atoms, grid, predictor.record.charges)[0]
    log.info("scf: %s, %d atoms, grid %s, SCF from the prediction of %s", key, len(atoms),
             grid.shape, predictor.path)
    seeded = en.scf_from_density(atoms, grid, rho0, settings)
    if not seeded.converged:
        raise DFTFailed(f"the SCF from the prediction did not converge: {seeded.message}. "
                        "Nothing was written. Fix: raise dft.max_scf_cycles or check the "
                        "structure")
    summary = {"structure": structure, "key": key, "out": str(path), "formula":
               atoms.get_chemical_formula(), "n_atoms": len(atoms), "grid_shape": list(grid.shape),
               "backend": settings.backend, "model": predictor.path,
               "model_sha256": predictor.sha256, "predict_s": predict_s,
               "iterations_from_prediction": seeded.n_iterations,
               "wall_time_from_prediction_s": seeded.wall_time_s,
               "free_energy_per_atom_ha": seeded.free_energy_ha / len(atoms),
               "start_nrmse": nrmse(rho0, seeded.rho)}
    if compare_default:
        c = en.scf_iterations_saved(atoms, grid, rho0, settings, seeded=seeded)
        summary.update(iterations_default=c["iterations_default"],
                       wall_time_default_s=c["wall_time_default_s"],
                       iterations_saved=c["iterations_saved"],
                       energy_difference_ha_per_atom=(c["free_energy_from_prediction_ha"]
                                                      - c["free_energy_default_ha"]) / len(atoms),
                       default_converged=c["converged"])
    rho_sad = atomic_density(atoms, grid, settings)
    extra = {"scf_start": "prediction", "start_model_sha256": predictor.sha256,
             "start_nrmse": summary["start_nrmse"], "structure_path": structure}
    data.write_part(path, key, atoms, seeded, rho_sad, extra)
    data.assemble(path, [key], {"name": key, "source": FORMAT_SOURCE, "backend": settings.backend})
    return summary


def format_summary(s: dict) -> str:
    """Human-readable lines of a :func:`run_seeded_scf` summary."""
    lines = [(f"{s['structure']}: {s['formula']}, {s['n_atoms']} atoms, grid "
              f"{'x'.join(map(str, s['grid_shape']))} [{s['backend']}]"),
             (f"prediction ({s['predict_s']:.1f} s): density NRMSE {s['start_nrmse']:.3e} "
              "against the converged SCF"),
             (f"SCF from the prediction: {s['iterations_from_prediction']} iterations, "
              f"{s['wall_time_from_prediction_s']:.1f} s, E = {s['free_energy_per_atom_ha']:.8f} "
              "Ha/atom (free energy)")]
    if "iterations_default" in s:
        lines.append(f"SCF from the default start: {s['iterations_default']} iterations, "
                     f"{s['wall_time_default_s']:.1f} s: {s['iterations_saved']} saved; energies "
                     f"differ by {s['energy_difference_ha_per_atom']:.1e} Ha/atom")
    lines.append(f"label written: {s['out']} (key {s['key']}); train on it with 'hpcdens train'")
    return "\n".join(lines)
