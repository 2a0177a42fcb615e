"""Which part of a prediction's density error makes its Harris-Foulkes energy error: by atom
coordination, per-atom charge and wavelength (docs/reproduction.md, "Charge transfer between
atoms").

    python launch/energy_split.py PREDICTION.h5 TEST.h5 CONFIG.toml [--mult 1.15]

With d = rho_ML (Eq. 9) - rho_DFT: the energy error (Ha/atom, against the DFT density's) of
rho_DFT + d restricted to the regions (nearest atom) of the under-coordinated atoms (< 4
neighbours within ``mult`` x covalent radii) and of the others; of the per-atom mean of d over
each region (charge moved between atoms) and of d minus it; and of the Fourier components of d
below and above |G| = 0.5, 1, 1.5, 2 Bohr^-1. Each energy is one Harris-Foulkes evaluation.
"""

import argparse
from pathlib import Path

import numpy as np
from ase.neighborlist import natural_cutoffs, neighbor_list
from ase.units import Bohr
from energy_by_region import prediction_error

from hpcdens.neighbors import NeighborSearch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prediction", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("config", type=Path)
    ap.add_argument("--mult", type=float, default=1.15)
    args = ap.parse_args()
    snap, d, energy = prediction_error(args.prediction, args.test, args.config)
    n, grid = len(snap.atoms), snap.grid
    e0 = energy(snap.rho)

    def err(delta):
        return energy(snap.rho + delta) - e0

    def share(part):
        return np.sum(part ** 2) / np.sum(d ** 2)

    print(f"{snap.key}: whole error {err(d):+.3e} Ha/atom (E_HF(rho_DFT) - E_DFT "
          f"{e0 - snap.attrs['free_energy_ha'] / n:+.1e})")
    search = NeighborSearch(snap.atoms.positions / Bohr, snap.atoms.numbers, grid.cell_bohr, m=1)
    owner = search.query(grid.cartesian_points(), k=1).atom[:, 0].reshape(grid.shape)
    cn = np.bincount(neighbor_list("i", snap.atoms, natural_cutoffs(snap.atoms, mult=args.mult)),
                     minlength=n)
    under = cn[owner] < 4
    print(f"under-coordinated atoms {np.mean(cn < 4):.2f} (volume {under.mean():.2f}, share of "
          f"|d|^2 {share(d * under):.2f}): {err(d * under):+.3e}; the others: "
          f"{err(d * ~under):+.3e}")
    q = np.bincount(owner.ravel(), weights=d.ravel(), minlength=n)
    mean = (q / np.bincount(owner.ravel(), minlength=n))[owner]
    dq = q * grid.voxel_volume_bohr3
    print(f"per-atom mean of d (charge moved between atoms, rms {np.sqrt(np.mean(dq ** 2)):.3f} "
          f"e): {err(mean):+.3e}; d minus it: {err(d - mean):+.3e}")
    freqs = np.meshgrid(*[np.fft.fftfreq(k, 1 / k) for k in grid.shape], indexing="ij")
    g = np.linalg.norm(np.stack(freqs, -1) @ (2 * np.pi * np.linalg.inv(grid.cell_bohr).T),
                       axis=-1)
    spectrum = np.fft.fftn(d)
    for cut in (0.5, 1.0, 1.5, 2.0):
        low = np.real(np.fft.ifftn(spectrum * (g < cut)))
        print(f"|G| < {cut} Bohr^-1 (wavelength > {2 * np.pi / cut:.1f} Bohr): share "
              f"{share(low):.3f}, {err(low):+.3e}; the rest {err(d - low):+.3e}")


if __name__ == "__main__":
    main()
