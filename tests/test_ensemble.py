"""Ensembles of trainings (hpcdens.ensemble, `hpcdens ensemble`): each member's samples rewritten
into the first member's units predict what the member predicts; the pooled samples give the
mixture's Eq. 7 moments; the ensemble file works wherever a model file does (serial predict
here), refuses what it cannot do and members that do not belong together."""

import numpy as np
import pytest
import torch

from hpcdens.bnn_predict import predict
from hpcdens.cli import main as cli_main
from hpcdens.ensemble import in_units_of, pooled
from hpcdens.errors import InputError, ModelError
from hpcdens.io.model import (
    load_model,
    read_predictor,
    save_ensemble,
    weights_sha256,
    with_samples,
)
from tests.predict_helpers import M, make_model, read_fields, sige_cell, write_cell


def _descriptors(n=40, seed=5):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice([14, 32], (n, M)), rng.uniform(2, 10, (n, M)),
                           rng.uniform(-1, 1, (n, 3 * M))], axis=1)


@pytest.fixture
def members(tmp_path):
    """Three untrained models whose normalisation buffers all differ (other random data)."""
    return [make_model(tmp_path / f"m{seed}.pt", seed=seed) for seed in (0, 1, 2)]


def test_samples_in_the_first_members_units_predict_what_the_member_predicts(members):
    (first, _), (net, rec) = load_model(members[0]), load_model(members[1])
    assert not torch.equal(first.x_mean, net.x_mean) and float(first.y_std) != float(net.y_std)
    x, samples = _descriptors(), net.draw_weight_samples(rec.n_samples, rec.sample_seed)
    own = predict(net, x, samples, keep_samples=True)
    moved = predict(first, x, in_units_of(samples, net, first), keep_samples=True)
    for key in ("samples", "mean", "epistemic_var", "aleatoric_var"):
        np.testing.assert_allclose(moved[key], own[key], rtol=1e-10, atol=1e-14, err_msg=key)


def test_pooled_samples_give_the_mixture_moments(members):
    loaded = [load_model(p) for p in members]
    drawn = [(net, net.draw_weight_samples(r.n_samples, r.sample_seed)) for net, r in loaded]
    x = _descriptors()
    each = [predict(net, x, s) for net, s in drawn]
    pool = pooled(drawn)
    assert pool.n_samples == sum(s.n_samples for _, s in drawn)
    mixed = predict(loaded[0][0], x, pool)
    means = np.array([e["mean"] for e in each])
    np.testing.assert_allclose(mixed["mean"], means.mean(0), rtol=1e-10)
    # law of total variance: the members' own spread plus the spread of their means
    within = np.mean([e["epistemic_var"] for e in each], axis=0)
    np.testing.assert_allclose(mixed["epistemic_var"], within + means.var(0), rtol=1e-8)
    np.testing.assert_allclose(mixed["aleatoric_var"],
                               np.mean([e["aleatoric_var"] for e in each], axis=0), rtol=1e-10)
    # interleaved: the first K samples are one of each member, in order
    first3 = predict(loaded[0][0], x, with_samples_of(pool, 3), keep_samples=True)["samples"]
    for i, e in enumerate(drawn):
        one = predict(e[0], x, with_samples_of(e[1], 1), keep_samples=True)["samples"][0]
        np.testing.assert_allclose(first3[i], one, rtol=1e-10)


def with_samples_of(samples, k):
    from hpcdens.bnn import WeightSamples

    return WeightSamples(tuple(w[:k] for w in samples.weights),
                         tuple(b[:k] for b in samples.biases), samples.seed)


def test_an_ensemble_file_predicts_the_members_mean(members, tmp_path):
    from mpi4py import MPI

    from hpcdens.parallel.predict import run_predict

    ens = tmp_path / "ens.pt"
    assert cli_main(["ensemble", *map(str, members[:2]), "--out", str(ens)]) == 0
    cell = write_cell(tmp_path / "cell.extxyz", sige_cell((1, 1, 1)))
    fields = []
    for i, model in enumerate([*members[:2], ens]):
        run_predict(MPI.COMM_SELF, model, cell, tmp_path / f"p{i}.h5", shape=(11, 11, 11),
                    precision="float64")
        fields.append(read_fields(tmp_path / f"p{i}.h5"))
    (a, _), (b, _), (e, attrs) = fields
    np.testing.assert_allclose(e["rho"], (a["rho"] + b["rho"]) / 2, rtol=1e-10)
    assert np.all(e["epistemic_std"] ** 2 >= (a["epistemic_std"] ** 2 + b["epistemic_std"] ** 2)
                  / 2 * (1 - 1e-9))
    assert attrs["n_samples"] == 8
    record = read_predictor(ens).record
    assert [m["path"] for m in record.training["ensemble"]] == [str(p) for p in members[:2]]
    assert record.calibration is None
    assert weights_sha256(ens) not in {weights_sha256(p) for p in members}


def test_what_an_ensemble_cannot_do_is_refused(members, tmp_path):
    ens = tmp_path / "ens.pt"
    assert save_ensemble(ens, members).n_samples == 12
    with pytest.raises(ModelError, match="ensemble of 3 trainings.*Fix: give one of its members"):
        load_model(ens)                                     # calibrate, learn-compare
    with pytest.raises(InputError, match="posterior-mean network. Fix: --samples 3"):
        read_predictor(ens, samples="mean")
    assert read_predictor(ens, samples=3).record.n_samples == 3
    with pytest.raises(ModelError, match="itself an ensemble"):
        save_ensemble(tmp_path / "e2.pt", [ens, members[0]])
    with pytest.raises(InputError, match="two or more model files"):
        save_ensemble(tmp_path / "e3.pt", members[:1])
    assert with_samples(read_predictor(ens), 12).sample_mode == "all"


@pytest.mark.parametrize("change, key", [({"target": "delta_rho"}, "target"),
                                         ({"species": [14, 50]}, "species"),
                                         ({"valence_electrons": {"14": 4, "32": 14}},
                                          "valence_electrons")])
def test_members_of_other_settings_are_refused_and_nothing_written(members, tmp_path, change,
                                                                   key):
    other = make_model(tmp_path / "other.pt", seed=4, meta=change)
    out = tmp_path / "ens.pt"
    with pytest.raises(ModelError, match=rf"other.pt differs from .*m0.pt in \['{key}'\]"):
        save_ensemble(out, [members[0], other])
    assert not out.exists()
    wide = make_model(tmp_path / "wide.pt", seed=4, hidden=(16, 8))
    with pytest.raises(ModelError, match=r"\['architecture'\]"):
        save_ensemble(out, [members[0], wide])


def test_the_command_does_not_replace_a_file_without_overwrite(members, tmp_path, capsys):
    out = tmp_path / "ens.pt"
    out.write_text("keep me")
    assert cli_main(["ensemble", *map(str, members), "--out", str(out)]) == 2
    assert "exists. Fix" in capsys.readouterr().err and out.read_text() == "keep me"
    assert cli_main(["ensemble", *map(str, members), "--out", str(out), "--overwrite"]) == 0
    assert "N_s = 12 weight samples" in capsys.readouterr().out
