"""``hpcdens predict`` with a model that has a charge model (docs/charges.md): the file's
rho_normalised is Eq. 9 followed by the per-atom Eq. 9, computed block by block and chunk by
chunk, and equal to the whole-grid correction of evaluate and scf; --no-charge-correction (and a
model without one) gives Eq. 9 alone."""

import numpy as np
import pytest

from tests.predict_helpers import charge_record, make_model, read_fields, sige_cell, write_cell


@pytest.fixture(scope="module")
def charged(tmp_path_factory):
    d = tmp_path_factory.mktemp("charged")
    make_model(d / "model.pt", meta={"charges": charge_record()})
    write_cell(d / "cell.extxyz", sige_cell((1, 1, 2), seed=7))
    return d


def _predict(d, name, **kw):
    from mpi4py import MPI

    from hpcdens.parallel.predict import run_predict

    summary = run_predict(MPI.COMM_SELF, d / "model.pt", d / "cell.extxyz", d / name,
                          spacing_bohr=0.8, overwrite=True, **kw)
    return summary, *read_fields(d / name)


def test_the_file_holds_the_whole_grid_correction(charged):
    from hpcdens.charge_correction import correct_density
    from hpcdens.io.model import load_model
    from hpcdens.io.prediction import read_prediction

    summary, fields, attrs = _predict(charged, "small-chunks.h5", chunk_points=500)
    pred = read_prediction(charged / "small-chunks.h5")
    eq9 = fields["rho"] * attrs["n_electrons"] / attrs["integral_rho_raw"]
    want, info = correct_density(eq9, pred.atoms, pred.grid,
                                 load_model(charged / "model.pt")[1].charges)
    got = fields["rho_normalised"]
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    assert np.abs(got - eq9).max() > 1e-4 * np.abs(eq9).max()      # it did change the density
    assert got.sum() * pred.grid.voxel_volume_bohr3 == pytest.approx(attrs["n_electrons"],
                                                                      rel=1e-12)
    assert attrs["charge_corrected"]
    assert summary["charge_correction"] == pytest.approx(info, rel=1e-9)
    assert summary["timings"]["charges"] > 0
    # one chunk per block gives the same to rounding
    _, whole, _ = _predict(charged, "one-chunk.h5", chunk_points=10 ** 6)
    assert np.abs(whole["rho_normalised"] - got).max() <= 1e-13 * np.abs(got).max()


def test_without_the_correction_it_is_eq9_alone(charged):
    summary, fields, attrs = _predict(charged, "plain.h5", charge_correction=False)
    eq9 = fields["rho"] * (attrs["n_electrons"] / attrs["integral_rho_raw"])
    np.testing.assert_array_equal(fields["rho_normalised"], eq9)
    assert not attrs["charge_corrected"] and summary["charge_correction"] is None


def test_the_command_says_what_rho_normalised_is(charged, tmp_path, capsys):
    from hpcdens.cli import main

    argv = ["predict", str(charged / "model.pt"), str(charged / "cell.extxyz"),
            "--spacing-bohr", "0.8", "--overwrite"]
    assert main(argv + ["--out", str(tmp_path / "a.h5")]) == 0
    assert "corrected to the model's atomic charges: rms change" in capsys.readouterr().out
    assert main(argv + ["--out", str(tmp_path / "b.h5"), "--no-charge-correction"]) == 0
    assert "atomic charges" not in capsys.readouterr().out
    make_model(tmp_path / "plain.pt")
    assert main(["predict", str(tmp_path / "plain.pt"), *argv[2:], "--out",
                 str(tmp_path / "c.h5")]) == 0
    assert "Eq. 9 alone: the model has no charge model ('hpcdens charges" \
        in capsys.readouterr().out
