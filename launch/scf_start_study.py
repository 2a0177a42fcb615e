"""How many SCF iterations does a predicted density save? (docs/energy.md, "SCF started from the
prediction").

For every prediction file in DIR (``hpcdens evaluate`` writes them under EVAL/predictions/): the
SCF of its structure on its grid from the renormalised prediction (Eq. 9) and from the backend's
own start (PySCF: minao; SPARC: the psp8 atomic superposition), same settings (CONFIG's [dft]
section, --backend to switch code) and convergence criteria, with the per-cycle residual of both
(PySCF: L1 density residual per electron; SPARC: its SCF error). One JSON per cell in OUT
(resumable: cells with a JSON are skipped), then a table of all cells in OUT.

    python launch/scf_start_study.py EVAL/predictions CONFIG.toml OUT [--backend sparc] [--cells N]
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hpcdens import energy as en
from hpcdens.config import load_config
from hpcdens.dft import get_backend, valence_electrons
from hpcdens.io.prediction import read_prediction
from hpcdens.metrics import nrmse

RESIDUAL = {"pyscf": "residual", "sparc": "scf_error"}


def scf(atoms, grid, settings, rho0) -> dict:
    """One SCF from ``rho0`` (None: the backend's start): iterations, wall, energies, residuals."""
    cycles = []
    result = get_backend(settings.backend).scf_from_density(atoms, grid, settings, rho0=rho0,
                                                            callback=cycles.append)
    key = RESIDUAL[settings.backend]
    return {"iterations": result.n_iterations, "wall_s": result.wall_time_s,
            "converged": bool(result.converged),
            "free_energy_per_atom_ha": result.free_energy_ha / len(atoms),
            "residuals": [float(c[key]) for c in cycles], "rho": result.rho}


def study_cell(path: Path, settings) -> dict:
    pred = read_prediction(path, "rho")
    rho0 = en.renormalise(pred.rho, pred.grid, valence_electrons(pred.atoms, settings))[0]
    seeded = scf(pred.atoms, pred.grid, settings, rho0)
    default = scf(pred.atoms, pred.grid, settings, None)
    return {"cell": path.stem, "formula": pred.atoms.get_chemical_formula(),
            "n_atoms": len(pred.atoms), "grid_shape": list(pred.grid.shape),
            "backend": settings.backend, "start_nrmse": nrmse(rho0, seeded["rho"]),
            "energy_difference_ha_per_atom": seeded["free_energy_per_atom_ha"]
            - default["free_energy_per_atom_ha"],
            "from_prediction": {k: v for k, v in seeded.items() if k != "rho"},
            "default": {k: v for k, v in default.items() if k != "rho"}}


def table(rows: list[dict]) -> str:
    lines = ["| cell | atoms | start NRMSE | first residual, prediction / default | iterations, "
             "prediction / default | saved | wall s, prediction / default | dE (Ha/atom) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, d = r["from_prediction"], r["default"]
        lines.append(f"| {r['formula']} | {r['n_atoms']} | {r['start_nrmse']:.2e} | "
                     f"{p['residuals'][0]:.1e} / {d['residuals'][0]:.1e} | {p['iterations']} / "
                     f"{d['iterations']} | {1 - p['iterations'] / d['iterations']:.0%} | "
                     f"{p['wall_s']:.0f} / {d['wall_s']:.0f} | "
                     f"{r['energy_difference_ha_per_atom']:.1e} |")
    saved = np.array([1 - r["from_prediction"]["iterations"] / r["default"]["iterations"]
                      for r in rows])
    wall = np.array([1 - r["from_prediction"]["wall_s"] / r["default"]["wall_s"] for r in rows])
    converged = all(r["from_prediction"]["converged"] and r["default"]["converged"] for r in rows)
    lines.append(f"\n{len(rows)} cells: iterations saved mean {saved.mean():.0%} (min "
                 f"{saved.min():.0%}, max {saved.max():.0%}); wall time saved mean "
                 f"{wall.mean():.0%}; all converged: {converged}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="directory of 'hpcdens predict' files")
    parser.add_argument("config", type=Path, help="input file whose [dft] section is used")
    parser.add_argument("out", type=Path)
    parser.add_argument("--backend", choices=sorted(RESIDUAL), help="default: CONFIG's")
    parser.add_argument("--cells", type=int, help="only the first N files (sorted by name)")
    args = parser.parse_args()
    settings = load_config(args.config).dft
    settings = replace(settings, backend=args.backend) if args.backend else settings
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(args.predictions.glob("*.h5"))[:args.cells]:
        out = args.out / f"{path.stem}.json"
        if not out.is_file():
            row = study_cell(path, settings)
            out.write_text(json.dumps(row, indent=1) + "\n")
            print(f"{row['formula']}: {row['from_prediction']['iterations']} iterations from the "
                  f"prediction, {row['default']['iterations']} from the default start", flush=True)
        rows.append(json.loads(out.read_text()))
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
