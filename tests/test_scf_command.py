"""``hpcdens scf``: a real tiny PySCF model predicts a rattled SiGe cell, the SCF starts from that
prediction, converges to the default start's energy, and the label is a training set that the
project's readers (and ``hpcdens train``'s data loader) accept."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pyscf")

from hpcdens.io.training_set import read_training_set
from tests.input_helpers import TINY, label_and_train, write_input_file

TRAIN = {"descriptors.n_neighbors": 12, "model.hidden_layers": [32, 32], "model.n_samples": 4,
         "train.points_per_snapshot": 0, "train.validation_fraction": 0.25, "train.epochs": 6,
         "train.batch_size": 128, "train.learning_rate": 3e-3, "train.seed": 0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ase.build import bulk

    d = tmp_path_factory.mktemp("scf")
    gen = label_and_train(d, TRAIN)
    atoms = bulk("Si", "diamond", a=5.54)
    atoms.numbers[1] = 32
    atoms.rattle(0.03, seed=5)
    atoms.write(d / "cell.xyz")
    return d, gen


def test_scf_from_prediction_writes_a_label(setup, capsys):
    from hpcdens.cli import main

    d, gen = setup
    out = d / "label.h5"
    assert main(["scf", str(d / "model.pt"), str(d / "cell.xyz"), "--out", str(out),
                 "--config", str(gen), "--compare-default", "--key", "SiGe/s000",
                 "--json", str(d / "scf.json")]) == 0
    printed = capsys.readouterr().out
    assert "SCF from the prediction" in printed and "saved" in printed
    s = json.loads((d / "scf.json").read_text())
    assert s["iterations_from_prediction"] >= 1 and s["default_converged"]
    assert abs(s["energy_difference_ha_per_atom"]) < 1e-6
    assert 0 < s["start_nrmse"] < 0.2
    (snap,) = read_training_set(out)
    assert snap.key == "SiGe/s000" and snap.attrs["scf_start"] == "prediction"
    assert snap.attrs["free_energy_ha"] / len(snap.atoms) == pytest.approx(
        s["free_energy_per_atom_ha"], abs=1e-12)
    assert snap.grid.integrate(snap.rho) == pytest.approx(snap.attrs["n_electrons"], rel=1e-6)
    from ase.io import read

    assert np.allclose(snap.atoms.positions, read(d / "cell.xyz").positions)
    # the label is training data: the training loader reads it with the original set
    from hpcdens.training.data import load_snapshots

    assert len(load_snapshots([d / "train.h5", out])) == 5


def test_bad_input_is_refused_before_any_work(setup, capsys):
    from hpcdens.cli import main

    d, _ = setup
    (d / "exists.h5").write_text("x")
    assert main(["scf", str(d / "model.pt"), str(d / "cell.xyz"), "--out",
                 str(d / "exists.h5")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["scf", str(d / "model.pt"), str(d / "nope.xyz"), "--out", str(d / "n.h5")]) == 2
    assert "nope.xyz" in capsys.readouterr().err and not (d / "n.h5").exists()


def test_a_model_of_other_valence_electrons_is_refused(setup, capsys):
    """The tiny model learnt PySCF's 4-electron Ge; SPARC's psp8 Ge has 14 (semicore 3d)."""
    from hpcdens.cli import main

    pytest.importorskip("sparc")
    d, _ = setup
    sparc = write_input_file(d / "sparc.toml", {**TINY, "dft.backend": "sparc"})
    assert main(["scf", str(d / "model.pt"), str(d / "cell.xyz"), "--out", str(d / "s.h5"),
                 "--config", str(sparc)]) == 2
    assert "Ge 4 vs 14" in capsys.readouterr().err and not (d / "s.h5").exists()


def test_sparc_without_a_binary_is_refused_before_the_prediction(setup, capsys, monkeypatch):
    """SPARC's check_ready runs with the other checks: no $ASE_SPARC_COMMAND, no prediction, no
    file (Si has 4 valence electrons in both backends, so the valence check passes)."""
    from ase.build import bulk

    from hpcdens.cli import main
    from hpcdens.parallel import predict

    pytest.importorskip("sparc")
    monkeypatch.delenv("ASE_SPARC_COMMAND", raising=False)

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before the SPARC check")

    monkeypatch.setattr(predict, "predict_atoms", no_prediction)
    d, _ = setup
    bulk("Si", "diamond", a=5.43).write(d / "si.xyz")
    sparc = write_input_file(d / "sparc-si.toml", {**TINY, "dft.backend": "sparc"})
    assert main(["scf", str(d / "model.pt"), str(d / "si.xyz"), "--out", str(d / "si.h5"),
                 "--config", str(sparc)]) == 1
    assert "ASE_SPARC_COMMAND" in capsys.readouterr().err and not (d / "si.h5").exists()
