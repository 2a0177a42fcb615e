"""Deep-ensemble comparison for ``launch/kl_study.sh`` runs (issue #14: does an ensemble of
independently trained networks see unseen compositions where one network's posterior does not?).

For runs that differ only in their training seed (same training set and settings), per test
snapshot: the ensemble spread of the density (standard deviation over the members of their
renormalised mean densities, averaged over the grid, e/Bohr^3) next to the members' mean
epistemic std; the ratio of each between held-out and trained compositions; and the ensemble's
energy error bar (standard deviation over the members of E_ML, Ha/atom) with its coverage of the
ensemble-mean energy error, next to the members' own sigma_E.

    python launch/ensemble_table.py TRAIN.h5 RUN_DIR RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import h5py
import numpy as np
from kl_table import trained_compositions


def member_rows(run: Path) -> dict[str, dict]:
    return {r["key"]: r for r in csv.DictReader(open(run / "evaluate" / "evaluate.csv"))}


def density_spread(runs: list[Path], key: str) -> float:
    name = key.replace("/", "__") + ".h5"
    fields = []
    for run in runs:
        with h5py.File(run / "evaluate" / "predictions" / name, "r") as f:
            fields.append(f["rho_normalised"][()])
    return float(np.std(np.stack(fields), axis=0, ddof=1).mean())


def main(argv: list[str]) -> None:
    trained = trained_compositions(argv[0])
    runs = [Path(a) for a in argv[1:]]
    members = [member_rows(r) for r in runs]
    keys = list(members[0])
    seen = np.array([k.split("/")[0] in trained for k in keys])
    spread = np.array([density_spread(runs, k) for k in keys])
    epi = np.array([np.mean([float(m[k]["epistemic_std_mean"]) for m in members]) for k in keys])
    e_ml = np.array([[float(m[k]["e_ml_per_atom_ha"]) for m in members] for k in keys])
    e_dft = np.array([float(members[0][k]["e_dft_per_atom_ha"]) for k in keys])
    sig_bnn = np.array([np.mean([float(m[k]["e_ml_std_per_atom_ha"]) for m in members])
                        for k in keys])
    err = e_ml.mean(1) - e_dft
    sig_ens = e_ml.std(1, ddof=1)
    member_err = np.abs(e_ml - e_dft[:, None])
    ratio = lambda a: a[~seen].mean() / a[seen].mean()
    print(f"{len(runs)} members ({', '.join(r.name for r in runs)}); {seen.sum()} test snapshots "
          f"of trained compositions, {(~seen).sum()} held out\n")
    print("| quantity | trained | held out | held out / trained |\n|---|---|---|---|")
    for name, a, unit in (("ensemble density spread", spread, 1e4),
                          ("members' epistemic std (BNN)", epi, 1e4),
                          ("ensemble energy spread sigma_E,ens", sig_ens, 1e4),
                          ("members' sigma_E (BNN)", sig_bnn, 1e4),
                          ("\\|E error\\| of the ensemble mean", np.abs(err), 1e4),
                          ("members' \\|E error\\|", member_err.mean(1), 1e4)):
        print(f"| {name} (1e-4) | {unit * a[seen].mean():.2f} | {unit * a[~seen].mean():.2f} | "
              f"{ratio(a):.2f} |")
    held = np.abs(err[~seen])
    print(f"\nensemble mean energy: mean / max |error| over the held-out {held.mean():.2e}"
          f" / {held.max():.2e} Ha/atom (members: "
          f"{member_err[~seen].mean():.2e} mean); |error| <= 2 sigma_E,ens for "
          f"{100 * np.mean(np.abs(err) <= 2 * sig_ens):.0f} % of all {len(keys)} cells, "
          f"<= 2 sigma_E (BNN, members' mean) for "
          f"{100 * np.mean(np.abs(err) <= 2 * sig_bnn):.0f} %; RMS z ensemble "
          f"{np.sqrt(np.mean((err / sig_ens) ** 2)):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
