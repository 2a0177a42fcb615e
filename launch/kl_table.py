"""Table of ``launch/kl_study.sh``: for each run directory (model.pt, evaluate/), the KL divisor N,
its validation NRMSE, the held-out energy and density errors, the mean epistemic std on the
test compositions the training set holds and on the others, their ratio (issue #14: >= 2), the
same ratio of the energy error bar sigma_E, and the coverages.

    python launch/kl_table.py TRAIN.h5 RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import h5py
import numpy as np

from hpcdens.io.model import load_model


def trained_compositions(train_h5: str) -> set[str]:
    with h5py.File(train_h5, "r") as f:
        return set(f["snapshots"].keys())


def row(run: Path, trained: set[str]) -> str:
    record = load_model(run / "model.pt")[1]
    val = record.training.get("validation", {}).get("nrmse", float("nan"))
    rows = list(csv.DictReader(open(run / "evaluate" / "evaluate.csv")))
    seen = np.array([r["key"].split("/")[0] in trained for r in rows])
    f = lambda key: np.array([float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows])
    err, epi, nrmse = np.abs(f("error_ha_per_atom")), f("epistemic_std_mean"), f("nrmse")
    sig = f("e_ml_std_per_atom_ha")
    within = np.abs(f("error_ha_per_atom")) <= 2 * sig
    n_kl = record.config["train"]["kl_divisor"]
    return (f"| {n_kl} | {val:.4f} | {err[~seen].mean():.2e} / {err[~seen].max():.2e} | "
            f"{nrmse[~seen].mean():.4f} | {1e4 * epi[seen].mean():.2f} / "
            f"{1e4 * epi[~seen].mean():.2f} | **{epi[~seen].mean() / epi[seen].mean():.2f}** | "
            f"{sig[~seen].mean() / sig[seen].mean():.2f} | {100 * within.mean():.0f} % | "
            f"{100 * f('coverage_2sigma_total').mean():.1f} % | {run.name} |")


def main(argv: list[str]) -> None:
    trained = trained_compositions(argv[0])
    print("| kl_divisor | val NRMSE | held-out mean / max \\|E err\\| (Ha/atom) | held-out NRMSE | "
          "epistemic std trained / held-out (1e-4 e/Bohr^3) | ratio | sigma_E ratio | "
          "\\|E err\\| <= 2 sigma_E (all) | density 2-sigma coverage | run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in argv[1:]:
        print(row(Path(run), trained))


if __name__ == "__main__":
    main(sys.argv[1:])
