"""The quinary AlCrFeCoNi path end to end on a tiny real budget: structures, PySCF labels with the
semicore GTH pseudopotentials, a delta-rho model, one Bayesian learn round and one evaluation.

2-atom cells (2 x 1 x 1 primitive fcc, so every candidate of resolution 2 - the 5 pure elements
and the 10 equimolar pairs - is a distinct cell), mesh 0.25 Bohr (the coarsest the mesh check
accepts for Ni), one rattled snapshot per composition, M = 12, a 60-32-32-2 network, N_s = 10.
Not a physical benchmark (gamma point, tiny cells): it shows that five species, Al's soft and the
3d metals' hard pseudopotentials and the delta-rho target go through every stage together."""

import json

import numpy as np
import pytest

from hpcdens.cli import main
from hpcdens.config import load_config
from hpcdens.io.training_set import read_training_set
from hpcdens.learning.loop import run_learn
from hpcdens.metrics import nrmse
from tests.input_helpers import write_input_file

ELEMENTS = ["Al", "Cr", "Fe", "Co", "Ni"]
QUINARY = {
    "system.elements": ELEMENTS,
    "system.lattice": "fcc",
    "system.lattice_constants_angstrom": {"Al": 4.05, "Cr": 3.60, "Fe": 3.60, "Co": 3.54, "Ni": 3.52},
    "system.primitive": True,
    "system.supercell": [2, 1, 1],
    "compositions.list": ["Al1"],
    "snapshots.per_composition": 1,
    "snapshots.rattle_stdev_angstrom": 0.03,
    "dft.mesh_spacing_bohr": 0.25,
    "dft.scf_tol": 1e-6,
    "descriptors.n_neighbors": 12,
    "model.target": "delta_rho",
    "model.hidden_layers": [32, 32],
    "model.n_samples": 10,
    "train.points_per_snapshot": 0,
    "train.validation_fraction": 0.2,
    "train.epochs": 10,
    "train.batch_size": 256,
    "train.learning_rate": 3e-3,
    "train.patience": 10,
    "learn.strategy": "bayesian",
    "learn.candidate_resolution": 2,
    "learn.per_round": 1,
    "learn.max_rounds": 2,
    "learn.score_points": 300,
}
PURE = ["Al1_Cr0_Fe0_Co0_Ni0", "Al0_Cr1_Fe0_Co0_Ni0", "Al0_Cr0_Fe1_Co0_Ni0", "Al0_Cr0_Fe0_Co1_Ni0",
        "Al0_Cr0_Fe0_Co0_Ni1"]

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One bayesian learn run (T1 -> + the most uncertain pair): (directory, journal)."""
    d = tmp_path_factory.mktemp("quinary")
    inp = write_input_file(d / "learn.toml", QUINARY)
    return d, run_learn(load_config(inp), d / "run")


def test_learn_trains_on_the_five_pure_elements_then_adds_the_most_uncertain_pair(learned):
    d, state = learned
    r1, r2 = state["rounds"]
    assert r1["training"] == PURE
    assert len(r1["scores"]) == 10 and all(np.isfinite(s) and s > 0 for s in r1["scores"].values())
    chosen = max(r1["scores"], key=r1["scores"].get)
    assert r1["chosen"] == [chosen] and r2["training"] == PURE + [chosen]
    snaps = read_training_set(d / "run" / "train.h5")
    assert len(snaps) == 6
    valence = {"Al": 3, "Cr": 14, "Fe": 16, "Co": 17, "Ni": 18}     # gth-pbe: semicore 3s3p
    for s in snaps:
        n_e = sum(valence[el] for el in s.atoms.get_chemical_symbols())
        assert s.attrs["n_electrons"] == n_e
        # the SAD is exact where it must be; the SCF density to the mesh's aliasing
        assert abs(s.grid.integrate(s.rho_sad) - n_e) < 1e-4 * n_e
        assert abs(s.grid.integrate(s.rho) - n_e) < 1e-4 * n_e


def test_delta_rho_model_evaluates_on_a_held_out_pair(learned, tmp_path):
    d, state = learned
    trained = state["rounds"][-1]["training"]
    held_out = next(c for c in state["rounds"][0]["scores"] if c not in trained)
    test_inp = write_input_file(tmp_path / "test.toml", {**QUINARY, "compositions.list": [held_out],
                                                          "snapshots.seed": 7})
    testset = tmp_path / "test.h5"
    assert main(["generate", str(test_inp), "--out", str(testset), "--no-progress"]) == 0
    model = d / "run" / "round_02" / "model.pt"
    out = tmp_path / "ev"
    assert main(["evaluate", str(model), str(testset), "--out", str(out), "--energy-samples", "0"]) == 0
    row = json.loads((out / "evaluate.json").read_text())["rows"][0]
    snap = read_training_set(testset)[0]
    # The prediction is the SAD plus the predicted delta-rho: close to the SAD's accuracy (on this
    # budget, 6 two-atom cells and 10 epochs, it learns little: measured NRMSE 0.0125 vs the SAD's
    # 0.0124), an order of magnitude better than a prediction without the SAD added back.
    sad_nrmse = nrmse(snap.rho_sad, snap.rho)
    assert np.isfinite(row["nrmse"]) and row["nrmse"] < 1.5 * sad_nrmse, (row["nrmse"], sad_nrmse)
    assert sad_nrmse < 0.2 * nrmse(np.zeros_like(snap.rho), snap.rho)
    assert np.isfinite(row["error_ha_per_atom"]) and abs(row["error_ha_per_atom"]) < 0.1
