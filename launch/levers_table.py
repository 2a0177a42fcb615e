"""One line per evaluation directory (``hpcdens evaluate --out DIR``) of a delta-rho model: energy
errors, density error, Eq. 9 rescaling and the fit at the semicore peaks
(launch/crfeconi_levers.sh; docs/reproduction-crfeconi.md, "Training levers").

Peak fit: over the ``TOP`` grid points of highest DFT density of each test cell (the semicore
shells), the mean of rho_DFT - rho_SAD (what the model must learn there) and of the raw
prediction's rho_ML - rho_SAD, averaged over the cells; their ratio is 1 for a perfect fit.
The DFT densities come from the training-set file the evaluation was run on (``--test``).

    python launch/levers_table.py [--test TEST.h5] EVAL_DIR [EVAL_DIR ...]
"""

import argparse
import csv
from pathlib import Path

import h5py
import numpy as np

from hpcdens.io.training_set import read_training_set

TOP = 2000


def peak_fit(directory: Path, truth: dict) -> tuple[float, float]:
    """(mean true delta, mean predicted delta) at the TOP densest points, e/Bohr^3."""
    true, pred = [], []
    for path in sorted((directory / "predictions").glob("*.h5")):
        snap = truth[path.stem.replace("__", "/")]
        top = np.argsort(snap.rho.reshape(-1))[-TOP:]
        sad = snap.rho_sad.reshape(-1)[top]
        with h5py.File(path, "r") as f:
            ml = f["rho"][...].reshape(-1)[top]
        true.append(np.mean(snap.rho.reshape(-1)[top] - sad))
        pred.append(np.mean(ml - sad))
    return float(np.mean(true)), float(np.mean(pred))


def row(directory: Path, truth: dict) -> str:
    with open(directory / "evaluate.csv") as f:
        rows = list(csv.DictReader(f))
    col = {k: np.array([float(r[k]) for r in rows])
           for k in ("abs_error_ha_per_atom", "abs_error_ha_per_electron", "error_ha_per_atom",
                     "nrmse", "renormalisation_factor")}
    true, pred = peak_fit(directory, truth)
    name = f"{directory.parent.name}/{directory.name}"
    return (f"| {name} | {len(rows)} | {col['abs_error_ha_per_atom'].mean():.2e} | "
            f"{col['abs_error_ha_per_atom'].max():.2e} | "
            f"{col['abs_error_ha_per_electron'].mean():.2e} | "
            f"{int((col['error_ha_per_atom'] < 0).sum())} | {col['nrmse'].mean():.2e} | "
            f"{np.abs(col['renormalisation_factor'] - 1).max():.1e} | "
            f"{true:+.3f} / {pred:+.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--test", type=Path, default=Path("runs/reproduction-crfeconi/test.h5"))
    args = parser.parse_args()
    truth = {s.key: s for s in read_training_set(args.test)}
    print("| model | cells | mean \\|E err\\| Ha/atom | max | mean Ha/e | negative | mean NRMSE | "
          f"max \\|Eq. 9 - 1\\| | peak delta true / ML (top {TOP} points) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in args.dirs:
        print(row(d, truth))


if __name__ == "__main__":
    main()
