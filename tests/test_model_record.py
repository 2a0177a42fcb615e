"""The model file (hpcdens.io.model): one writer, one validating reader, the typed record.

A file written as every earlier version wrote it (torch.save of format/version/architecture/
state_dict/meta) still loads; bad files, other format versions and incomplete or malformed
records are refused with a ModelError naming the problem and the fix."""

import dataclasses

import numpy as np
import pytest
import torch

from hpcdens import bnn, bnn_predict
from hpcdens.descriptors import DESCRIPTOR_VERSION
from hpcdens.errors import InputError, ModelError
from hpcdens.io.model import (
    ModelRecord,
    load_model,
    prediction_sha256,
    read_predictor,
    save_model,
    weights_sha256,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

M = 3
RECORD = ModelRecord(n_neighbors=M, species=(14, 32), target="rho", n_samples=4, sample_seed=7,
                     descriptor_version=DESCRIPTOR_VERSION,
                     dft={"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe",
                          "xc": "PBE", "mesh_spacing_bohr": 0.6},
                     valence_electrons={14: 4.0, 32: 4.0})


def small_net(n_in=5 * M, hidden=(6, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = bnn.BayesianNet(n_in, hidden, "tanh", prior_sigma=0.5, generator=gen)
    rng = np.random.default_rng(seed)
    net.fit_normalisation(rng.normal(size=(50, n_in)), rng.uniform(0.01, 0.1, 50))
    return net


def old_file(path, net, meta):
    """A model file exactly as hpcdens wrote them before the record (bnn.save_model)."""
    torch.save({"format": "hpcdens-bnn", "version": 1, "architecture": net.architecture(),
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "meta": meta}, path)
    return path


def test_round_trip_keeps_record_weights_and_predictions(tmp_path):
    net = small_net()
    record = dataclasses.replace(RECORD, features={"M": M, "grid": np.array([0.5, 0.6])},
                                 training={"epochs": np.int64(3)}, hpcdens_version="x")
    path = save_model(tmp_path / "m.pt", net, record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    loaded, got = load_model(path)
    assert got == dataclasses.replace(record, features={"M": M, "grid": [0.5, 0.6]},
                                      training={"epochs": 3})
    assert got.mesh_spacing_bohr == 0.6 and not loaded.training
    payload = torch.load(path, weights_only=True)
    assert sorted(payload) == ["architecture", "format", "meta", "state_dict", "version"]
    assert payload["meta"]["valence_electrons"] == {"14": 4.0, "32": 4.0}
    assert payload["meta"]["species"] == [14, 32] and "config" not in payload["meta"]
    x = np.random.default_rng(1).normal(size=(20, 5 * M))
    a = bnn_predict.predict(net, x, net.draw_weight_samples(4, 1))
    b = bnn_predict.predict(loaded, x, loaded.draw_weight_samples(4, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_file_of_the_earlier_writer_loads(tmp_path):
    meta = {"n_neighbors": M, "species": [32, 14], "target": "delta_rho", "n_samples": 2,
            "sample_seed": 0, "descriptor_version": 1, "valence_electrons": {"14": 4, "32": 4},
            "dft": {"backend": "pyscf", "basis": "b", "pseudo": "p", "xc": "PBE"},
            "features": {"M": M}, "training": {"ranks": 1}, "config": {"name": "t"},
            "hpcdens_version": "0.1.0", "unknown_later_key": 1}
    net, record = load_model(old_file(tmp_path / "old.pt", small_net(), meta))
    assert record.species == (14, 32) and record.target == "delta_rho"
    assert record.valence_electrons == {14: 4.0, 32: 4.0} and record.dft["basis"] == "b"
    assert record.mesh_spacing_bohr is None and record.config == {"name": "t"}
    assert net.n_in == 5 * M


def test_read_predictor_draws_the_records_samples(tmp_path):
    net = small_net()
    path = save_model(tmp_path / "m.pt", net, RECORD)
    predictor = read_predictor(path)
    want = net.draw_weight_samples(RECORD.n_samples, RECORD.sample_seed)
    assert predictor.record == RECORD and predictor.path == str(path)
    assert all(torch.equal(a, b) for a, b in zip(predictor.samples.weights, want.weights))
    assert len(predictor.sha256) == 64


def test_weights_hash_ignores_the_record(tmp_path):
    net = small_net()
    a = save_model(tmp_path / "a.pt", net, RECORD)
    b = save_model(tmp_path / "b.pt", net, dataclasses.replace(RECORD, training={"wall": 1.0}))
    c = save_model(tmp_path / "c.pt", small_net(seed=1), RECORD)
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)


def test_prediction_hash_ignores_only_what_documents_the_training(tmp_path):
    from hpcdens.io.files import sha256_file

    net = small_net()
    a = save_model(tmp_path / "a.pt", net, RECORD)
    b = save_model(tmp_path / "b.pt", net, dataclasses.replace(
        RECORD, training={"wall_time_s": 2.0, "data_files": ["x.h5"]},
        config={"name": "other"}, hpcdens_version="y"))
    assert sha256_file(a) != sha256_file(b) and prediction_sha256(a) == prediction_sha256(b)
    for change in ({"n_samples": 5}, {"sample_seed": 8}, {"target": "delta_rho"},
                   {"valence_electrons": {14: 4.0, 32: 14.0}}):
        c = save_model(tmp_path / "c.pt", net, dataclasses.replace(RECORD, **change))
        assert prediction_sha256(c) != prediction_sha256(a), change
    d = save_model(tmp_path / "d.pt", small_net(seed=1), RECORD)
    assert prediction_sha256(d) != prediction_sha256(a)


def test_files_that_are_not_models_are_refused(tmp_path):
    assert issubclass(ModelError, InputError)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model\n")
    with pytest.raises(ModelError, match="not an hpcdens model"):
        load_model(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an hpcdens model"):
        load_model(tmp_path / "other.pt")
    payload = torch.load(save_model(tmp_path / "good.pt", small_net(), RECORD), weights_only=True)
    payload["architecture"]["hidden_layers"] = [5]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ModelError, match="do not fit the stored architecture"):
        load_model(tmp_path / "broken.pt")
    for version, fix in ((2, "upgrade hpcdens"), (0, "retrain")):
        torch.save({**payload, "version": version}, tmp_path / "v.pt")
        with pytest.raises(ModelError, match=f"format version {version}.*{fix}"):
            load_model(tmp_path / "v.pt")


@pytest.mark.parametrize("change, message", [
    ({"sample_seed": None}, r"lacks metadata \['sample_seed'\].*retrain"),
    ({"n_neighbors": "twelve"}, "malformed metadata"),
    ({"species": [14.5]}, "malformed metadata"),
    ({"dft": "pyscf"}, "malformed metadata"),
    ({"target": "rho2"}, "target 'rho2' unknown"),
    ({"n_samples": 0}, "must be >= 1"),
    ({"n_neighbors": M + 1}, "does not match its input width"),
    ({"descriptor_version": DESCRIPTOR_VERSION + 1}, "descriptor version"),
])
def test_incomplete_or_malformed_records_are_named(tmp_path, change, message):
    meta = {**RECORD.to_meta(), **change}
    meta = {k: v for k, v in meta.items() if v is not None}
    with pytest.raises(ModelError, match=message):
        load_model(old_file(tmp_path / "bad.pt", small_net(), meta))


def test_save_needs_a_record_of_plain_values(tmp_path):
    with pytest.raises(TypeError, match="ModelRecord"):
        save_model(tmp_path / "m.pt", small_net(), RECORD.to_meta())
    with pytest.raises(TypeError, match="plain values"):
        save_model(tmp_path / "m.pt", small_net(),
                   dataclasses.replace(RECORD, training={"x": object()}))
    assert not list(tmp_path.iterdir())
