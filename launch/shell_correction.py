"""The charge correction of whole atoms and of radial shells of them on a model's test-set
predictions, with the DFT density's charges (oracles) and with fitted charge models
(docs/reproduction-crfeconi.md, "The charge of each semicore shell").

    python launch/shell_correction.py EVAL_DIR TEST.h5 CONFIG.toml [--shells 0.3 0.6 1.0 1.6]
        [--models NAME=MODEL.pt ...] [--keys KEY ...] [--json OUT.json]

EVAL_DIR holds the predictions of ``hpcdens evaluate`` without a charge correction
(``--no-charge-correction``, or a model without a charge model); their ``rho_normalised`` (Eq. 9)
is corrected, for every cell of TEST.h5 (``--keys``: only these), to
  atom-dft   every atom's Hirshfeld population of the DFT density (a perfect charge model);
  shell-dft  every radial shell's population of the DFT density (``--shells``, Bohr; a perfect
             model of the shells' charges);
  NAME       the charge model of MODEL.pt (``hpcdens charges MODEL.pt [--shells ...]``), exactly
             as ``hpcdens evaluate`` would (hpcdens.charge_correction.correct_density),
and the Harris-Foulkes free-energy error of each against the DFT label is printed (Ha/atom and
Ha/electron; the DFT settings of CONFIG), with the rms error of the shells' charges of the
prediction. One Harris-Foulkes set-up per cell.
"""

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
from ase.data import chemical_symbols

from hpcdens import charges
from hpcdens.charge_correction import correct_density, hirshfeld, reference_populations
from hpcdens.config import load_config
from hpcdens.dft import get_backend
from hpcdens.energy import CHEMICAL_ACCURACY_HA_PER_ATOM, energy_per_atom
from hpcdens.io.model import load_model
from hpcdens.io.training_set import read_training_set


def oracle(rho, snap, radial, radii):
    """``rho`` corrected to the populations of the DFT density of ``snap`` (per atom without
    ``radii``, per radial shell with them), total kept; and the rms error of the prediction's
    shell charges (e)."""
    w, _, q_dft = hirshfeld(snap.atoms, snap.grid, snap.rho, radial, radii)
    dv = snap.grid.voxel_volume_bohr3
    now = charges.populations(w, rho, dv)
    dft = reference_populations(radial, snap.atoms.get_chemical_symbols(), radii).ravel() - q_dft
    live = now > charges.LIVE_POPULATION
    target = np.where(live, dft, now)
    target[live] += (now.sum() - target.sum()) / live.sum()
    fixed = charges.correct(rho, w, dv, target, now=now)[0]
    return fixed, float(np.sqrt(np.mean((now - dft) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("config", type=Path)
    ap.add_argument("--shells", type=float, nargs="+", default=[0.3, 0.6, 1.0, 1.6])
    ap.add_argument("--models", nargs="+", default=[], metavar="NAME=MODEL")
    ap.add_argument("--keys", nargs="+", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    radii = tuple(args.shells)
    settings = load_config(args.config).dft
    snaps = [s for s in read_training_set(args.test) if not args.keys or s.key in args.keys]
    symbols = sorted({chemical_symbols[z] for s in snaps for z in s.atoms.numbers})
    radial = get_backend(settings.backend).radial_densities(symbols, settings)
    models = {}
    for item in args.models:
        name, path = item.split("=", 1)
        models[name] = load_model(path)[1].charges
        if models[name] is None:
            raise SystemExit(f"{path} has no charge model: run hpcdens charges on it first")
    kinds = ["plain", "atom-dft", "shell-dft", *models]
    rows = []
    print("| cell | " + " | ".join(kinds) + " (Ha/atom) | shell charge rmse (e) |")
    print("|---" * (len(kinds) + 2) + "|")
    for snap in snaps:
        path = args.eval_dir / "predictions" / (snap.key.replace("/", "__") + ".h5")
        with h5py.File(path, "r") as f:
            rho = f["rho_normalised"][...]
        n = len(snap.atoms)
        fields = {"plain": rho, "atom-dft": oracle(rho, snap, radial, ())[0]}
        fields["shell-dft"], rmse = oracle(rho, snap, radial, radii)
        for name, record in models.items():
            fields[name] = correct_density(rho, snap.atoms, snap.grid, record)[0]
        n_e = float(snap.attrs["n_electrons"])
        energy = energy_per_atom(snap.atoms, snap.grid, settings, n_e)
        e_dft = float(snap.attrs["free_energy_ha"]) / n
        row = {"key": snap.key, "n_atoms": n, "n_electrons": n_e, "shell_charge_rmse": rmse,
               **{k: energy(v) - e_dft for k, v in fields.items()}}
        rows.append(row)
        print(f"| {snap.key} | " + " | ".join(f"{row[k]:+.2e}" for k in kinds)
              + f" | {rmse:.4f} |", flush=True)
    for k in kinds:
        e = np.abs([r[k] for r in rows])
        per_e = np.abs([r[k] * r["n_atoms"] / r["n_electrons"] for r in rows])
        print(f"{k}: mean / max |E error| {e.mean():.2e} / {e.max():.2e} Ha/atom, "
              f"{per_e.mean():.2e} / {per_e.max():.2e} Ha/electron, "
              f"{int(np.sum(e <= CHEMICAL_ACCURACY_HA_PER_ATOM))} of {len(e)} within 1.6e-3")
    if args.json:
        args.json.write_text(json.dumps({"radii_bohr": list(radii), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
