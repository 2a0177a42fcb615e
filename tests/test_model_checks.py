"""Checks of a trained model the issue asks for, on a tiny real PySCF training set of the PURE
elements only (Si1 and Ge1, two rattled snapshots each, primitive 2-atom diamond cells, mesh
0.6 Bohr), one delta_rho model trained once for the module (M = 12, 60-32-32-2 network):

(a) the epistemic std is larger on a composition the model has not seen (Si0.5Ge0.5) than on
    new snapshots of the training compositions;
(b) prediction + SAD through run_predict (COMM_SELF) integrates to N_e within the renormalisation
    factor the file reports, and rho_normalised integrates to N_e.
Measured numbers are in the comments and in docs/model.md (Benchmarks)."""

import h5py
import numpy as np
import pytest
from ase.units import Bohr

from hpcdens import bnn_predict
from hpcdens.config import load_config
from hpcdens.descriptors import descriptors
from hpcdens.grid import Grid
from hpcdens.io.model import load_model
from hpcdens.neighbors import NeighborSearch
from hpcdens.structures import build_cell, decorate, rattle, write_structures
from hpcdens.training.data import load_snapshots
from hpcdens.training.run import run_train
from tests.input_helpers import TINY, write_input_file

PURE = {**TINY, "compositions.list": ["Si1", "Ge1"]}  # the tiny labels, pure elements only
TRAIN = {"descriptors.n_neighbors": 12, "model.hidden_layers": [32, 32],
         "model.target": "delta_rho", "train.points_per_snapshot": 0,
         "train.validation_fraction": 0.25, "train.epochs": 200, "train.batch_size": 128,
         "train.learning_rate": 3e-3, "train.patience": 20, "train.seed": 0}
A_SI, A_GE = 5.431, 5.658  # Angstrom (hpcdens.structures defaults)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model path, training-set path): labelled and trained once for the module."""
    from mpi4py import MPI

    from hpcdens.labelling import run_generate

    d = tmp_path_factory.mktemp("pure")
    cfg = load_config(write_input_file(d / "pure.toml", {**PURE, **TRAIN}))
    run_generate(cfg, d / "train.h5", MPI.COMM_SELF, progress=False)
    s = run_train(cfg, [d / "train.h5"], d / "delta.pt", progress=False)
    assert s["finished"]
    return d / "delta.pt", d / "train.h5"


def _mean_epistemic_std(model, record, atoms, spacing_bohr=0.6):
    m = record.n_neighbors
    grid = Grid.from_spacing(atoms.cell.array / Bohr, spacing_bohr)
    search = NeighborSearch(atoms.positions / Bohr, atoms.numbers, grid.cell_bohr, m=m)
    out = bnn_predict.predict(model, descriptors(grid.cartesian_points(), search, m),
                              model.draw_weight_samples(30, 0))
    return float(np.sqrt(out["epistemic_var"]).mean())


def _primitive(a, counts, stdev, seed):
    rng = np.random.default_rng(seed)
    return rattle(decorate(build_cell("diamond", a, primitive=True), counts, rng), stdev, rng)


def test_epistemic_std_is_larger_on_a_composition_far_from_the_training_ones(trained):
    """The issue's check: trained on pure Si and pure Ge only, the model's mean epistemic std is
    larger on Si0.5Ge0.5 (three random decorations, never seen) than on new snapshots of the
    training compositions (pure Si at a_Si, pure Ge at a_Ge, rattled like the training set, other
    seeds) and on the held-out training snapshot.

    Measured (this module's model, 200 epochs, seed 0): held-out 2.02e-4, Si 1.92e-4, Ge 2.01e-4,
    Si0.5Ge0.5 2.53-2.57e-4 e/Bohr^3: min(mixed) / max(pure) = 1.26. Threshold 1.1: the three mixed
    structures differ from each other by 1.6 %, so 10 % is six times the structure-to-structure
    spread; a constant or random score fails it. Over training seeds 0-2 the ratio was 1.26 /
    1.19 / 1.096 at 200 epochs; the model was not converged at 40 epochs (1.08-1.13).
    Not asserted, measured: the epistemic std does NOT grow for a pure Si cell compressed to
    0.85 a (ratio 0.46-0.85), although its outer neighbour distances lie below the training range:
    the mean-field posterior does not flag that extrapolation (docs/model.md)."""
    model_path, data = trained
    model, record = load_model(model_path)
    val = {v["key"] for v in record.training["validation_snapshots"]}
    (held,) = [s.snapshot for s in load_snapshots([data]) if s.key in val]
    pure = {"held-out": _mean_epistemic_std(model, record, held.atoms),
            "Si": _mean_epistemic_std(model, record, _primitive(A_SI, {"Si": 2}, 0.03, 11)),
            "Ge": _mean_epistemic_std(model, record, _primitive(A_GE, {"Ge": 2}, 0.03, 11))}
    mixed = [_mean_epistemic_std(model, record, _primitive((A_SI + A_GE) / 2, {"Si": 1, "Ge": 1},
                                                         0.03, seed)) for seed in (7, 8, 9)]
    ratio = min(mixed) / max(pure.values())
    print(f"mean epistemic std (e/Bohr^3): {pure}, Si0.5Ge0.5 {mixed}; ratio {ratio:.3f}")
    assert ratio > 1.1, (pure, mixed)


def test_delta_rho_prediction_plus_sad_integrates_to_n_electrons(trained, tmp_path):
    from mpi4py import MPI

    from hpcdens.parallel.predict import run_predict

    model_path, _ = trained
    atoms = _primitive((A_SI + A_GE) / 2, {"Si": 1, "Ge": 1}, 0.05, 3).repeat((2, 1, 1))
    write_structures(tmp_path / "cell.extxyz", [atoms])
    s = run_predict(MPI.COMM_SELF, model_path, tmp_path / "cell.extxyz", tmp_path / "pred.h5",
                    spacing_bohr=0.6)
    with h5py.File(tmp_path / "pred.h5", "r") as f:
        attrs = dict(f.attrs)
        rho, rho_norm, sad = f["rho"][()], f["rho_normalised"][()], f["rho_sad"][()]
    assert attrs["target"] == "delta_rho" and attrs["n_electrons"] == 16.0
    dv = attrs["voxel_volume_bohr3"]
    factor = attrs["n_electrons"] / attrs["integral_rho_raw"]
    assert rho.sum() * dv * factor == pytest.approx(16.0, rel=0, abs=1e-10)
    assert rho_norm.sum() * dv == pytest.approx(16.0, rel=0, abs=1e-10)
    assert s["integral_rho_raw"] == attrs["integral_rho_raw"]
    # SAD alone integrates to N_e; the trained correction moves it by little.
    print(f"integral rho_SAD {sad.sum() * dv:.6f}, raw {attrs['integral_rho_raw']:.6f}, "
          f"factor {factor:.6f}")
    assert abs(sad.sum() * dv - 16.0) < 1e-3 * 16
    assert abs(factor - 1) < 0.05
