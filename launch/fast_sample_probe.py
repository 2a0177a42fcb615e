"""Fast-sample mode probe (docs/commands/predict.md, "Fast-sample mode"): the Harris-Foulkes energy
and density of the mean of the first K weight samples and of the posterior-mean network against
the full N_s = 30 mean, on every 4th of the 64-atom study's 45 test cells (runs/reproduction64/).

    python launch/fast_sample_probe.py    # from the repository root, after the study's test stage

Prints one JSON line per cell and writes them to runs/reproduction64/fast_sample.json."""

import json
from dataclasses import replace

import numpy as np
from mpi4py import MPI

from hpcdens import energy as en
from hpcdens.dft import harris_foulkes_evaluator, settings_from_record
from hpcdens.io.training_set import read_snapshot, snapshot_keys
from hpcdens.metrics import nrmse
from hpcdens.parallel.block import sample_field_names
from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

TEST = "runs/reproduction64/test.h5"
MODEL = "runs/reproduction64/bayesian-train0/round_02/model.pt"
OUT = "runs/reproduction64/fast_sample.json"


def probe(snap, predictor, mean_predictor) -> dict:
    """Energies and NRMSE of each mode's mean density against the full mean, for one cell."""
    comm = MPI.COMM_SELF
    settings = settings_from_record({"backend": "pyscf", **snap.settings})
    full_fields = gather_fields(comm, predict_atoms(comm, snap.atoms, predictor,
                                                    shape=snap.grid.shape, keep_samples=True))
    samples = np.array([full_fields[n] for n in sample_field_names(predictor.record.n_samples)])
    mean_net = gather_fields(comm, predict_atoms(comm, snap.atoms, mean_predictor,
                                                 shape=snap.grid.shape))["rho"]
    evaluator = harris_foulkes_evaluator(snap.atoms, snap.grid, settings)

    def energy(rho):
        return en.energy_of_density(snap.atoms, snap.grid, rho, settings,
                                    evaluator=evaluator)["free_energy_ha"] / len(snap.atoms)

    full = samples.mean(0)
    e_full = energy(full)
    row = {"key": snap.key, "e_full_err": e_full - snap.attrs["free_energy_ha"] / len(snap.atoms)}
    for k in (1, 3, 5, 10):
        mean_k = samples[:k].mean(0)
        row[f"dE_{k}"], row[f"nrmse_{k}"] = energy(mean_k) - e_full, nrmse(mean_k, full)
        if k >= 3:
            row[f"sigma_ratio_{k}"] = float(samples[:k].std(0).mean() / samples.std(0).mean())
    row["dE_mean_net"], row["nrmse_mean_net"] = energy(mean_net) - e_full, nrmse(mean_net, full)
    return row


def main() -> None:
    predictor = load_predictor(MPI.COMM_SELF, MODEL)
    mean_predictor = replace(predictor, samples=predictor.net.mean_weights())
    rows = []
    for key in snapshot_keys(TEST)[::4]:
        rows.append(probe(read_snapshot(TEST, key), predictor, mean_predictor))
        print(json.dumps(rows[-1]), flush=True)
    with open(OUT, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
