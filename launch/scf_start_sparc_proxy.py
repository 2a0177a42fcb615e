"""SPARC SCF iterations saved by a start with a PySCF model's error (docs/energy.md, "SPARC on
64-atom SiGeSn").

No model trained on SPARC's SiGeSn densities exists here (SPARC's psp8 Ge and Sn carry 14
electrons, PySCF's GTH 4), so a PySCF model cannot start SPARC directly. This measures what a
SPARC model *with the PySCF model's error* would save. For each test snapshot KEY of TEST.h5,
on SPARC's grid (``--mesh`` Bohr):

1. the PySCF SCF (the model's recorded settings, on this grid) -> rho_py; the model's prediction
   -> rho_pred (Eq. 9 to PySCF's N_e); the model's error d = rho_pred - rho_py;
2. SPARC from its own start (the psp8 atomic superposition) -> rho_sp, iterations N_own;
3. SPARC from rho_sp + d (negatives clipped, Eq. 9 to SPARC's N_e): the "same error" start;
4. SPARC from rho_SAD,sp + (rho_pred - rho_SAD,py): the PySCF model's deformation density
   carried over to SPARC's atoms (the "transfer" start).

Each step is kept in OUT/KEY/ ('/' in KEY becomes '__'; resumable after a kill); OUT/KEY.json
holds iterations, wall times, start NRMSEs against rho_sp, residual histories and energy
differences.

    ASE_SPARC_COMMAND=... python launch/scf_start_sparc_proxy.py MODEL TEST.h5 OUT KEY [KEY ...]
        [--mesh 0.4] [--ranks 2] [--tol 1e-6]
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hpcdens import energy as en
from hpcdens.config_sections import DFTConfig
from hpcdens.dft import atomic_density, get_backend, settings_from_record, valence_electrons
from hpcdens.io.training_set import read_snapshot
from hpcdens.metrics import nrmse
from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms


def cached(path: Path, make) -> dict:
    """``make()`` (a dict of arrays and scalars) stored in ``path`` (npz), or read back."""
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    out = make()
    np.savez(path.with_suffix(".tmp.npz"), **out)
    path.with_suffix(".tmp.npz").rename(path)
    return out


def sparc_scf(atoms, grid, settings, rho0) -> dict:
    """One SPARC SCF from ``rho0`` (None: its own start): density, iterations, wall, energy."""
    cycles = []
    r = get_backend("sparc").scf_from_density(atoms, grid, settings, rho0=rho0,
                                              callback=cycles.append)
    return {"rho": r.rho, "iterations": r.n_iterations, "wall_s": r.wall_time_s,
            "converged": r.converged, "free_energy_per_atom_ha": r.free_energy_ha / len(atoms),
            "residuals": np.array([c["scf_error"] for c in cycles])}


def study(model, predictor, test, key, out: Path, sp: DFTConfig) -> dict:
    snap = read_snapshot(test, key)
    atoms = snap.atoms
    py = replace(settings_from_record(predictor.record.dft), mesh_spacing_bohr=sp.mesh_spacing_bohr)
    grid = get_backend("sparc").make_grid(atoms, sp)
    cell = out / key.replace("/", "__")
    cell.mkdir(parents=True, exist_ok=True)
    ne_py, ne_sp = valence_electrons(atoms, py), valence_electrons(atoms, sp)

    def pyscf_and_prediction():
        t = time.perf_counter()
        r = get_backend("pyscf").scf_from_density(atoms, grid, py)
        pred = predict_atoms(MPI.COMM_SELF, atoms, predictor, shape=grid.shape)
        rho_pred = en.renormalise(gather_fields(MPI.COMM_SELF, pred, ["rho"])["rho"], grid,
                                  ne_py)[0]
        return {"rho_py": r.rho, "rho_pred": rho_pred, "iterations": r.n_iterations,
                "wall_s": time.perf_counter() - t}

    base = cached(cell / "pyscf.npz", pyscf_and_prediction)
    d = base["rho_pred"] - base["rho_py"]
    own = cached(cell / "sparc_own.npz", lambda: sparc_scf(atoms, grid, sp, None))
    rho_sp, sad_sp = own["rho"], atomic_density(atoms, grid, sp)
    starts = {
        "same_error": rho_sp + d,
        "transfer": sad_sp + base["rho_pred"] - atomic_density(atoms, grid, py),
    }
    result = {"key": key, "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
              "grid_shape": list(grid.shape), "mesh_bohr": sp.mesh_spacing_bohr,
              "tol_scf": sp.scf_tol, "model": str(model),
              "model_nrmse_vs_pyscf": nrmse(base["rho_pred"], base["rho_py"]),
              "pyscf_iterations": int(base["iterations"]),
              "own": summary(own, rho_sp, sad_sp)}
    for name, start in starts.items():
        negative = float(np.mean(start < 0))
        start = en.renormalise(np.clip(start, 0.0, None), grid, ne_sp)[0]
        run = cached(cell / f"sparc_{name}.npz", lambda s=start: sparc_scf(atoms, grid, sp, s))
        result[name] = summary(run, rho_sp, start) | {"negative_fraction": negative}
        result[name]["saved_fraction"] = 1 - result[name]["iterations"] / result["own"][
            "iterations"]
        result[name]["energy_difference_ha_per_atom"] = float(
            run["free_energy_per_atom_ha"] - own["free_energy_per_atom_ha"])
    return result


def summary(run: dict, rho_sp, start) -> dict:
    """One SCF's figures; ``start``: its first density (SPARC's own: the psp8 superposition)."""
    return {"iterations": int(run["iterations"]), "wall_s": float(run["wall_s"]),
            "converged": bool(run["converged"]), "start_nrmse": nrmse(start, rho_sp),
            "first_scf_error": float(run["residuals"][0]) if len(run["residuals"]) else None,
            "residuals": [float(x) for x in run["residuals"]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("test")
    ap.add_argument("out", type=Path)
    ap.add_argument("keys", nargs="+")
    ap.add_argument("--mesh", type=float, default=0.4, help="SPARC grid spacing (Bohr)")
    ap.add_argument("--ranks", type=int, default=2, help="ranks per SPARC run")
    ap.add_argument("--tol", type=float, default=1e-6, help="SPARC TOL_SCF")
    args = ap.parse_args()
    predictor = load_predictor(MPI.COMM_SELF, args.model)
    rec = predictor.record.dft or {}
    sp = DFTConfig(backend="sparc", mesh_spacing_bohr=args.mesh, scf_tol=args.tol,
                   smearing_kelvin=rec.get("smearing_kelvin", 631.554), ranks_per_task=args.ranks)
    for key in args.keys:
        path = args.out / f"{key.replace('/', '__')}.json"
        if path.exists():
            continue
        r = study(args.model, predictor, args.test, key, args.out, sp)
        path.write_text(json.dumps(r, indent=1) + "\n")
        print(f"{key}: own {r['own']['iterations']} it ({r['own']['wall_s']:.0f} s); "
              + "; ".join(f"{n} {r[n]['iterations']} it ({r[n]['wall_s']:.0f} s, start NRMSE "
                          f"{r[n]['start_nrmse']:.2e}, saved {r[n]['saved_fraction']:.0%})"
                          for n in ("same_error", "transfer")), flush=True)


if __name__ == "__main__":
    main()
