"""Fast-sample mode probe (docs/commands/predict.md, "Fast-sample mode"): the Harris-Foulkes energy
and density of the mean of the first K weight samples and of the posterior-mean network against
the full N_s = 30 mean, on every 4th of the 64-atom study's 45 test cells (runs/reproduction64/).

    python launch/fast_sample_probe.py    # from the repository root, after the study's test stage

Prints one JSON line per cell and writes them to runs/reproduction64/fast_sample.json."""
import json, time
from dataclasses import replace
import numpy as np
from mpi4py import MPI
from hpcdens.io.training_set import read_snapshot, snapshot_keys
from hpcdens.parallel.predict import load_predictor, predict_atoms, gather_fields
from hpcdens.parallel.block import sample_field_names
from hpcdens.dft import settings_from_record, harris_foulkes_evaluator
from hpcdens import energy as en
from hpcdens.metrics import nrmse
T = "runs/reproduction64/test.h5"
pr = load_predictor(MPI.COMM_SELF, "runs/reproduction64/bayesian-train0/round_02/model.pt")
mean_pr = replace(pr, samples=pr.net.mean_weights())
keys = snapshot_keys(T)[::4][:12]
rows = []
for key in keys:
    snap = read_snapshot(T, key)
    s = settings_from_record({"backend": "pyscf", **snap.settings})
    f = gather_fields(MPI.COMM_SELF, predict_atoms(MPI.COMM_SELF, snap.atoms, pr, shape=snap.grid.shape, keep_samples=True))
    samples = np.array([f[n] for n in sample_field_names(30)])
    t0 = time.perf_counter()
    fm = gather_fields(MPI.COMM_SELF, predict_atoms(MPI.COMM_SELF, snap.atoms, mean_pr, shape=snap.grid.shape))
    ev = harris_foulkes_evaluator(snap.atoms, snap.grid, s)
    E = lambda rho: en.energy_of_density(snap.atoms, snap.grid, rho, s, evaluator=ev)["free_energy_ha"] / len(snap.atoms)
    full = samples.mean(0); e_full = E(full)
    row = {"key": key, "e_full_err": e_full - snap.attrs["free_energy_ha"] / len(snap.atoms)}
    for k in (1, 3, 5, 10):
        m = samples[:k].mean(0)
        row[f"dE_{k}"] = E(m) - e_full; row[f"nrmse_{k}"] = nrmse(m, full)
        if k >= 3:
            row[f"sigma_ratio_{k}"] = float(samples[:k].std(0).mean() / samples.std(0).mean())
    row["dE_mean_net"] = E(fm["rho"]) - e_full; row["nrmse_mean_net"] = nrmse(fm["rho"], full)
    rows.append(row); print(json.dumps(row), flush=True)
json.dump(rows, open("runs/reproduction64/fast_sample.json", "w"), indent=1)
