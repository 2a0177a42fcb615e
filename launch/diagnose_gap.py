"""Diagnosis of a model's error on cells larger than its training cells (docs/reproduction.md,
"Where the error comes from"), from the outputs of ``hpcdens evaluate``:

    python launch/diagnose_gap.py EVALUATE_DIR TESTSET.h5 [--reps 2 2 2] [--energy] [--out CSV]

For every snapshot of TESTSET evaluated in EVALUATE_DIR (its predictions/<key>.h5), the error
e = rho_pred (renormalised to N_e, Eq. 9) - rho_DFT is split with
:func:`hpcdens.regions.fourier_split` into the Fourier components a cell ``reps`` times smaller
(the 8-atom conventional cell of a 64-atom 2x2x2 cell) can hold and the rest: their RMS
(e/Bohr^3) and, with ``--energy``, their Harris-Foulkes cost E_HF(rho_DFT + part) - E_DFT
(Ha/atom; two extra PySCF evaluations per cell, each about as costly as evaluate's), next to the
whole error's E_HF(rho_pred) - E_DFT from evaluate.csv. Writes a CSV (default
EVALUATE_DIR/diagnosis.csv) and prints it as a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from hpcdens.dft import settings_from_record
from hpcdens.energy import energy_of_density, renormalise
from hpcdens.io.prediction import read_prediction
from hpcdens.io.training_set import read_snapshot
from hpcdens.regions import fourier_split

COLUMNS = ("key", "n_atoms", "rms_error", "rms_small_cell", "rms_supercell_only",
           "fraction_supercell_only", "e_error_ha_per_atom", "e_small_cell_ha_per_atom",
           "e_supercell_only_ha_per_atom")


def diagnose(evaluate_dir: Path, testset: Path, reps, with_energy: bool) -> list[dict]:
    result = json.loads((evaluate_dir / "evaluate.json").read_text())
    settings = settings_from_record(result["dft"]) if with_energy else None
    rows = []
    for row in result["rows"]:
        key = row["key"]
        snap = read_snapshot(testset, key)
        pred = read_prediction(evaluate_dir / "predictions" / f"{key.replace('/', '__')}.h5")
        rho, _ = renormalise(pred.rho, snap.grid, float(row["n_electrons"]))
        split = fourier_split(rho - snap.rho, reps)
        rms = float(np.sqrt(np.mean((rho - snap.rho) ** 2)))
        out = {"key": key, "n_atoms": len(snap.atoms), "rms_error": rms,
               "rms_small_cell": split["rms_small_cell"],
               "rms_supercell_only": split["rms_supercell_only"],
               "fraction_supercell_only": split["rms_supercell_only"] ** 2 / rms**2,
               "e_error_ha_per_atom": row["error_ha_per_atom"]}
        if with_energy:
            e_ref = float(snap.attrs["free_energy_ha"]) / len(snap.atoms)
            for part in ("small_cell", "supercell_only"):
                e = energy_of_density(snap.atoms, snap.grid, snap.rho + split[part], settings,
                                      renormalise=False, n_electrons=float(row["n_electrons"]))
                out[f"e_{part}_ha_per_atom"] = e["free_energy_per_atom_ha"] - e_ref
        rows.append(out)
        print(f"{key}: RMS {rms:.3e}, supercell-only share {out['fraction_supercell_only']:.2f}",
              flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("evaluate_dir", type=Path)
    ap.add_argument("testset", type=Path)
    ap.add_argument("--reps", type=int, nargs=3, default=(2, 2, 2))
    ap.add_argument("--energy", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = diagnose(args.evaluate_dir, args.testset, tuple(args.reps), args.energy)
    out = args.out or args.evaluate_dir / "diagnosis.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print("| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c))
                                for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
