"""Is the sign of a Harris-Foulkes energy error the model's bias or the functional's? The mirror
test (docs/energy.md, "The sign of the energy error").

For one prediction file (``hpcdens evaluate`` writes them under DIR/predictions/) and its DFT label,
with d = rho_ML (renormalised, Eq. 9) - rho_DFT: the Harris-Foulkes free-energy error of
rho_DFT + s d for s = 1, 1/2, -1/2, -1 (each renormalised to N_e), and of rho_DFT + d' where d'
has d's power spectrum and random Fourier phases (the same amount of error at each wavelength, in
other places; real, charge-neutral). E(s) = s E1 + s^2 E2 + ...: an error whose sign does not
change with s is second order, the functional's quadratic form Q(d) = E2, and says nothing about
a bias of the density; the first-order part E1 is what a one-signed density error would add.
One Harris-Foulkes set-up per cell; each energy is one further evaluation.

    python launch/hf_mirror.py PREDICTION.h5 TEST.h5 CONFIG.toml [--phases 3]
"""

import argparse
from pathlib import Path

import numpy as np
from energy_by_region import prediction_error  # launch/, the script's own directory


def random_phases(d: np.ndarray, seed: int) -> np.ndarray:
    """A real field with the power spectrum of ``d`` and random phases; zero mean (no charge)."""
    rng = np.random.default_rng(seed)
    amplitude = np.abs(np.fft.rfftn(d))
    phase = np.exp(2j * np.pi * rng.random(amplitude.shape))
    out = np.fft.irfftn(amplitude * phase, s=d.shape, axes=(0, 1, 2))
    out -= out.mean()
    return out * np.linalg.norm(d - d.mean()) / np.linalg.norm(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prediction", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--phases", type=int, default=3, help="random-phase fields (default 3)")
    args = parser.parse_args()
    snap, d, energy = prediction_error(args.prediction, args.test, args.config)
    n = len(snap.atoms)
    e_dft = snap.attrs["free_energy_ha"] / n

    def error(rho) -> float:
        return energy(rho) - e_dft

    errors = {s: error(snap.rho + s * d) for s in (1.0, 0.5, -0.5, -1.0)}
    e1 = (errors[1.0] - errors[-1.0]) / 2
    e2 = (errors[1.0] + errors[-1.0]) / 2
    rms = np.sqrt(np.mean(d ** 2)) / np.sqrt(np.mean(snap.rho ** 2))
    print(f"{snap.key}: {n} atoms, |d| / |rho_DFT| = {rms:.4f}")
    print("E(rho_DFT + s d) - E_DFT, Ha/atom:  " + "  ".join(f"s={s:+.1f}: {e:+.3e}"
                                                          for s, e in errors.items()))
    print(f"first order E1 = {e1:+.3e}, second order E2 = {e2:+.3e} (share of E(1) that is "
          f"second order: {e2 / errors[1.0]:.2f})")
    for seed in range(args.phases):
        rho = snap.rho + random_phases(d, seed)
        print(f"random phases, seed {seed}: E - E_DFT = {error(rho):+.3e} Ha/atom "
              f"({np.mean(rho < 0):.1%} of the points negative)")


if __name__ == "__main__":
    main()
