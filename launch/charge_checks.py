"""Charge checks of a study directory (launch/reproduce_crfeconi.sh, stage "checks"):

1. every labelled cell of the training and test sets directly in DIR (``*.h5``): the grid
   integral of the SAD and of the SCF density against N_e, |int rho dV - N_e| / N_e;
2. every prediction file under DIR (``**/predictions/*.h5``, written by evaluate and
   learn-compare): how much the Eq. 9 renormalisation rescales it, |N_e / int rho_raw dV - 1|.

Prints the largest value of each and how many files it covers.
    python launch/charge_checks.py DIR
"""

import sys
from pathlib import Path

import h5py

from hpcdens.io.training_set import read_training_set


def label_errors(path: Path) -> tuple[float, float, int]:
    """(max SAD error, max SCF-density error, snapshots) of one training set."""
    sad = scf = 0.0
    snaps = read_training_set(path)
    for s in snaps:
        n_e = s.attrs["n_electrons"]
        sad = max(sad, abs(s.grid.integrate(s.rho_sad) - n_e) / n_e)
        scf = max(scf, abs(s.grid.integrate(s.rho) - n_e) / n_e)
    return sad, scf, len(snaps)


def rescale(path: Path) -> tuple[float, str]:
    """(|N_e / int rho_raw - 1|, target) of one prediction file."""
    with h5py.File(path, "r") as f:
        return abs(f.attrs["n_electrons"] / f.attrs["integral_rho_raw"] - 1), str(f.attrs["target"])


def main(directory: str) -> int:
    root = Path(directory)
    print(f"{'training set':<40}{'snapshots':>10}{'max SAD error':>15}{'max SCF error':>15}")
    for path in sorted(root.glob("*.h5")):
        sad, scf, n = label_errors(path)
        print(f"{path.name:<40}{n:>10}{sad:>15.2e}{scf:>15.2e}")
    by_target: dict[str, list[float]] = {}
    for path in sorted(root.glob("**/predictions/*.h5")):
        value, target = rescale(path)
        by_target.setdefault(target, []).append(value)
    print(f"\n{'predictions':<40}{'files':>10}{'max |scale - 1|':>16}{'mean':>10}")
    for target, values in sorted(by_target.items()):
        print(f"{'target ' + target:<40}{len(values):>10}{max(values):>16.2e}"
              f"{sum(values) / len(values):>10.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
