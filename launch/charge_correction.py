"""The per-atom charge correction (hpcdens.charges, docs/charges.md) on a model's test-set
predictions: does fixing each atom's Hirshfeld charge fix the Harris-Foulkes energy?

    python launch/charge_correction.py TRAIN.h5 EVAL_DIR TEST.h5 CONFIG.toml
        [--compositions LABEL ...] [--keys KEY ...] [--json OUT.json] [--oracle]

1. The charge model is fitted to the Hirshfeld charges of the DFT densities of TRAIN.h5 (the
   density model's training snapshots; ``--compositions`` keeps only those whose key starts with
   one of the labels, e.g. a learn round's training compositions out of its train.h5).
2. For every prediction of ``hpcdens evaluate`` in EVAL_DIR/predictions/ (renormalised, Eq. 9)
   and its DFT label in TEST.h5 (``--keys``: only these): the Hirshfeld charges of the
   prediction, of the DFT density and of the charge model (made neutral); the prediction
   corrected to the charge model's charges; the Harris-Foulkes free-energy errors (Ha/atom, the
   DFT settings of CONFIG) of the prediction and of the corrected density against the DFT label.
   ``--oracle``: the DFT density's charges instead of the charge model's (what a perfect charge
   model would give).
3. A table per cell and a summary (mean / max |E error|, cells within chemical accuracy) on
   stdout; ``--json`` writes the rows.
"""

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from hpcdens import charges
from hpcdens.charge_correction import atom_features, hirshfeld
from hpcdens.config import load_config
from hpcdens.dft import get_backend
from hpcdens.energy import CHEMICAL_ACCURACY_HA_PER_ATOM, energy_per_atom
from hpcdens.io.training_set import read_training_set


def fit_charge_model(train: Path, radial, compositions, species):
    feats, q, groups = [], [], []
    for snap in read_training_set(train):
        if compositions and snap.key.split("/")[0] not in compositions:
            continue
        q.append(hirshfeld(snap.atoms, snap.grid, snap.rho, radial)[2])
        feats.append(atom_features(snap.atoms, species))
        groups += [snap.key] * len(snap.atoms)
    if not q:
        raise SystemExit(f"no snapshot of {train} matches --compositions {compositions}")
    model = charges.fit(np.vstack(feats), np.concatenate(q), groups, species)
    print(f"charge model: {len(groups)} atoms of {len(set(groups))} snapshots, cross-validated "
          f"rmse {model.cv_rmse:.4f} e (alpha {model.alpha:g}, gamma {model.gamma:g}), "
          f"charges rms {np.sqrt(np.mean(np.concatenate(q) ** 2)):.4f} e", flush=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train", type=Path)
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("config", type=Path)
    ap.add_argument("--compositions", nargs="+", default=[])
    ap.add_argument("--keys", nargs="+", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--oracle", action="store_true", help="correct to the DFT charges")
    args = ap.parse_args()
    settings = load_config(args.config).dft
    snaps = [s for s in read_training_set(args.test) if not args.keys or s.key in args.keys]
    species = sorted({int(z) for s in snaps for z in s.atoms.numbers}
                     | {int(z) for s in read_training_set(args.train) for z in s.atoms.numbers})
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[z] for z in species]
    radial = get_backend(settings.backend).radial_densities(symbols, settings)
    model = fit_charge_model(args.train, radial, set(args.compositions), species)
    rows = []
    print("| cell | E error (Ha/atom) | corrected | charge rmse (e): density model / charge "
          "model | max lam |\n|---|---|---|---|---|")
    for snap in snaps:
        path = args.eval_dir / "predictions" / (snap.key.replace("/", "__") + ".h5")
        with h5py.File(path, "r") as f:
            rho = f["rho_normalised"][...]
        w, zval, q_dft = hirshfeld(snap.atoms, snap.grid, snap.rho, radial)
        dv = snap.grid.voxel_volume_bohr3
        q_pred = zval - charges.populations(w, rho, dv)
        q_model = model.predict(atom_features(snap.atoms, species))
        if args.oracle:
            q_model = q_dft.copy()
        q_model += (q_pred.sum() - q_model.sum()) / len(q_model)     # the prediction's charge
        fixed, lam = charges.correct(rho, w, dv, zval - q_model)
        n_e = float(snap.attrs["n_electrons"])
        energy = energy_per_atom(snap.atoms, snap.grid, settings, n_e)
        e_dft = float(snap.attrs["free_energy_ha"]) / len(snap.atoms)
        row = {"key": snap.key, "error_ha_per_atom": energy(rho) - e_dft,
               "corrected_error_ha_per_atom": energy(fixed) - e_dft,
               "charge_rmse_density_model": float(np.sqrt(np.mean((q_pred - q_dft) ** 2))),
               "charge_rmse_charge_model": float(np.sqrt(np.mean((q_model - q_dft) ** 2))),
               "max_abs_lambda": float(np.abs(lam).max())}
        rows.append(row)
        print(f"| {snap.key} | {row['error_ha_per_atom']:+.2e} | "
              f"{row['corrected_error_ha_per_atom']:+.2e} | "
              f"{row['charge_rmse_density_model']:.4f} / {row['charge_rmse_charge_model']:.4f} | "
              f"{row['max_abs_lambda']:.3f} |", flush=True)
    for name, k in (("prediction", "error_ha_per_atom"),
                    ("corrected", "corrected_error_ha_per_atom")):
        e = np.abs([r[k] for r in rows])
        print(f"{name}: mean |E error| {e.mean():.3e}, max {e.max():.3e} Ha/atom, "
              f"{int(np.sum(e <= CHEMICAL_ACCURACY_HA_PER_ATOM))} of {len(e)} within 1.6e-3")
    if args.json:
        args.json.write_text(json.dumps({"charge_model": {"cv_rmse": model.cv_rmse,
                                                          "alpha": model.alpha,
                                                          "gamma": model.gamma},
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
