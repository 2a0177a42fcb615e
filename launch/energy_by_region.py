"""Where a predicted density's Harris-Foulkes energy error comes from, by distance to the nearest
nucleus (docs/reproduction-crfeconi.md, "Where the energy error sits").

For one prediction file (``hpcdens evaluate`` writes them under DIR/predictions/) and its DFT
label, with d = rho_ML (renormalised, Eq. 9) - rho_DFT: the energy error of rho_DFT + d restricted
to each shell of distance from the nearest nucleus (the rest of the cell keeps the DFT density; each
such density renormalised to N_e), next to the error of the whole prediction and the shells' share
of |d|^2. One Harris-Foulkes set-up per cell; each energy is one further evaluation.

    python launch/energy_by_region.py PREDICTION.h5 TEST.h5 CONFIG.toml [--shells 0.8 1.6]
"""

import argparse
from pathlib import Path

import h5py
import numpy as np
from ase.units import Bohr

from hpcdens.config import load_config
from hpcdens.energy import energy_per_atom, renormalise
from hpcdens.io.training_set import read_training_set
from hpcdens.neighbors import NeighborSearch


def nearest_nucleus(snap) -> np.ndarray:
    """Distance (Bohr) of every grid point to its nearest nucleus, periodic images included."""
    search = NeighborSearch(snap.atoms.positions / Bohr, snap.atoms.numbers, snap.grid.cell_bohr,
                            m=1)
    return search.query(snap.grid.cartesian_points(), k=1).dist[:, 0].reshape(snap.grid.shape)


def prediction_error(prediction: Path, test: Path, config: Path):
    """One prediction file of ``hpcdens evaluate`` (named after its snapshot's key) and its DFT
    label in ``test``: (snapshot, d = rho_ML renormalised (Eq. 9) - rho_DFT, e/Bohr^3, and
    rho -> Harris-Foulkes free energy per atom (Ha) of rho renormalised, one set-up for all)."""
    key = prediction.stem.replace("__", "/")
    snap = next(s for s in read_training_set(test) if s.key == key)
    n_e = float(snap.attrs["n_electrons"])
    with h5py.File(prediction, "r") as f:
        d = renormalise(f["rho"][...], snap.grid, n_e)[0] - snap.rho
    energy = energy_per_atom(snap.atoms, snap.grid, load_config(config).dft, n_e)
    return snap, d, energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prediction", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--shells", type=float, nargs="+", default=[0.8, 1.6],
                        help="shell boundaries, Bohr (default 0.8 1.6)")
    args = parser.parse_args()
    snap, d, energy = prediction_error(args.prediction, args.test, args.config)
    r = nearest_nucleus(snap)
    edges = [0.0, *args.shells, np.inf]
    n = len(snap.atoms)
    e_dft = energy(snap.rho)
    print(f"{snap.key}: E_HF(rho_DFT) - E_DFT = {e_dft - snap.attrs['free_energy_ha'] / n:+.2e} "
          "Ha/atom")
    print(f"{'region':<22}{'volume %':>10}{'share of |d|^2':>16}{'E error Ha/atom':>18}")
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (r >= lo) & (r < hi)
        print(f"{f'{lo:g} <= r < {hi:g} Bohr':<22}{100 * mask.mean():>10.1f}"
              f"{np.sum(d[mask] ** 2) / np.sum(d ** 2):>16.3f}"
              f"{energy(snap.rho + d * mask) - e_dft:>+18.2e}")
    print(f"{'whole cell':<22}{100.0:>10.1f}{1.0:>16.3f}{energy(snap.rho + d) - e_dft:>+18.2e}")


if __name__ == "__main__":
    main()
