"""Can the posterior predict the Harris-Foulkes energy error? (docs/energy.md, "The sign of the
energy error").

The error of E_HF at the predicted mean density is mostly the functional's second variation
Q(d) along the density error d (launch/hf_mirror.py). The posterior's sample densities give
deviations delta_j = rho_j - rho_mean; the antithetic pair rho_mean +- delta_j cancels the first-
order term exactly, so Q_j = (E(rho_mean + delta_j) + E(rho_mean - delta_j)) / 2 - E(rho_mean) is
the same quadratic form along delta_j (to third order). If the posterior's deviations point where
the real error does, the error is a fixed multiple of mean_j Q_j. For each test cell this prints
the error, mean_j Q_j and their ratio (every density renormalised, Eq. 9; free energies, Ha/atom).

    python launch/hf_curvature_probe.py MODEL TEST.h5 CONFIG [--samples 10] [--cells N]
"""

import argparse
from pathlib import Path

import numpy as np

from hpcdens.config import load_config
from hpcdens.energy import energy_per_atom
from hpcdens.io.training_set import read_training_set
from hpcdens.parallel.collective import self_comm
from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--samples", type=int, default=10, help="weight samples (default 10)")
    parser.add_argument("--cells", type=int, default=None, help="first N cells (default all)")
    args = parser.parse_args()
    comm, settings = self_comm(), load_config(args.config).dft
    predictor = load_predictor(comm, args.model)
    print(f"{'cell':<28}{'error':>11}{'mean Q_j':>11}{'ratio':>8}{'std Q_j':>10}"
          f"{'sigma_E':>10}  (Ha/atom)", flush=True)
    for snap in read_training_set(args.test)[:args.cells]:
        pred = predict_atoms(comm, snap.atoms, predictor, shape=snap.grid.shape, keep=True,
                             keep_samples=True)
        names = [f"rho_sample_{j}" for j in range(args.samples)]
        fields = gather_fields(comm, pred, ["rho", *names])
        n_e = float(snap.attrs["n_electrons"])
        energy = energy_per_atom(snap.atoms, snap.grid, settings, n_e)
        mean = fields["rho"]
        e0 = energy(mean)
        error = e0 - float(snap.attrs["free_energy_ha"]) / len(snap.atoms)
        q, e_plus = [], []
        for name in names:
            delta = fields[name] - mean
            e_plus.append(energy(mean + delta))
            q.append((e_plus[-1] + energy(mean - delta)) / 2 - e0)
        q = np.array(q)
        label = snap.key.split("/")[0]
        short = "".join(f"{p[:2]}{float(p[2:]):.2f}" for p in label.split("_"))
        print(f"{short:<28}{error:>+11.2e}{q.mean():>+11.2e}{error / q.mean():>8.1f}"
              f"{q.std(ddof=1):>10.1e}{np.std(e_plus, ddof=1):>10.1e}", flush=True)


if __name__ == "__main__":
    main()
