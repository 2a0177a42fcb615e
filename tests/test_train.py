"""`hpcdens train` and `hpcdens select-m` on a tiny real PySCF training set.

Four labelled 2-atom primitive diamond cells (Si and Si0.5Ge0.5, two rattled snapshots each, the
structures of tests/test_generate.py), 13^3 grid points each; M = 12, a 60-32-32-2 network, all
grid points, one validation snapshot. Measured numbers are in docs/commands/train.md."""

import argparse
import json

import numpy as np
import pytest
import torch
from ase.units import Bohr

from hpcdens import bnn_predict
from hpcdens.commands import select_m as select_m_command
from hpcdens.commands import train as train_command
from hpcdens.config import load_config
from hpcdens.descriptors import descriptors
from hpcdens.errors import InputError
from hpcdens.io.model import load_model
from hpcdens.metrics import nrmse
from hpcdens.neighbors import NeighborSearch
from hpcdens.sad import superpose
from hpcdens.training.data import (
    block_range,
    data_hash,
    load_snapshots,
    n_validation,
    normalisation_stats,
    sample_points,
    split,
)
from hpcdens.training.loop import prepare_data, steps_per_epoch
from hpcdens.training.run import run_train
from hpcdens.training.select_m import run_select_m
from tests.input_helpers import KEYS, TINY, TRAIN, write_input_file


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    """The four-snapshot training set, labelled once for this module (about 10 s)."""
    from mpi4py import MPI

    from hpcdens.labelling import run_generate

    d = tmp_path_factory.mktemp("trainset")
    gen = write_input_file(d / "gen.toml", TINY)
    run_generate(load_config(gen), d / "train.h5", MPI.COMM_SELF, progress=False)
    return d / "train.h5"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def config(write_input):
    def make(changes=None, name="train.toml"):
        return load_config(write_input({**TINY, **TRAIN, **(changes or {})}, name=name))
    return make


def _grid_prediction(model, record, snap, n_samples=10):
    """Mean density predicted on the whole grid of ``snap`` (e/Bohr^3)."""
    m = record.n_neighbors
    search = NeighborSearch(snap.atoms.positions / Bohr, snap.atoms.numbers,
                            snap.grid.cell_bohr, m=m)
    x = descriptors(snap.grid.cartesian_points(), search, m)
    mean = bnn_predict.predict(model, x, model.draw_weight_samples(n_samples, 0))["mean"]
    return mean.reshape(snap.grid.shape) + (snap.rho_sad if record.target == "delta_rho" else 0)


def _held_out(training_set, record):
    val = {v["key"] for v in record.training["validation_snapshots"]}
    return [s.snapshot for s in load_snapshots([training_set]) if s.key in val]


def test_model_learns_density_and_records_its_feature_spec(training_set, config, tmp_path):
    out = tmp_path / "model.pt"
    s = run_train(config(), [training_set], out, progress=False)
    # Measured: validation NRMSE 0.020 against 0.251 for the training-mean predictor (seeds
    # 0-4: 0.018-0.037).
    assert s["finished"] and s["epochs_run"] == 15 and s["n_validation_snapshots"] == 1
    assert s["best"]["nrmse"] < 0.25 * s["best"]["baseline_nrmse"]
    assert (tmp_path / "model.pt.ckpt").is_file()
    model, record = load_model(out)
    f = record.features
    assert (f["M"], f["n_in"], f["species"], record.target) == (12, 60, [14, 32], "rho")
    assert f["descriptor"] == "body-attached-frame" and f["descriptor_version"] == 1
    assert 0.55 < f["grid_spacing_bohr"][0] <= f["grid_spacing_bohr"][1] < 0.58
    assert record.training["data_sha256"] == data_hash(load_snapshots([training_set]))
    assert (record.n_neighbors, record.species, record.descriptor_version) == (12, (14, 32), 1)
    assert (record.n_samples, record.sample_seed) == (30, 0)
    assert record.valence_electrons == {14: 4.0, 32: 4.0}
    assert record.dft == {"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe",
                           "xc": "PBE", "mesh_spacing_bohr": 0.6}
    assert record.training["validation"]["nrmse"] == pytest.approx(s["best"]["nrmse"])
    assert record.config["train"]["epochs"] == 15 and "[train]" in record.config["toml"]
    json.dumps(record.to_meta())  # plain values only
    (snap,) = _held_out(training_set, record)
    pred = _grid_prediction(model, record, snap)
    constant = np.full(snap.rho.shape, float(model.y_mean))
    # Measured on the held-out snapshot's whole grid: 0.022 (10 weight samples) vs 0.251
    # (seeds 0-4: 0.018-0.038 vs 0.248-0.256).
    assert nrmse(pred, snap.rho) < 0.25 * nrmse(constant, snap.rho)


def test_delta_rho_target_improves_on_the_sad_density(training_set, config, tmp_path):
    out = tmp_path / "delta.pt"
    run_train(config({"model.target": "delta_rho"}), [training_set], out, progress=False)
    model, record = load_model(out)
    assert record.target == "delta_rho"
    (snap,) = _held_out(training_set, record)
    pred = _grid_prediction(model, record, snap)
    # Measured: 0.011, against 0.076 for rho_SAD alone and 0.251 for a constant (seeds 0-4:
    # 0.009-0.016 vs 0.076-0.078).
    assert nrmse(pred, snap.rho) < 0.5 * nrmse(snap.rho_sad, snap.rho)
    assert nrmse(pred, snap.rho) < 0.25 * nrmse(np.full(snap.rho.shape, snap.rho.mean()), snap.rho)
    # the record keeps the radial tables the labels' rho_SAD came from: predict needs no DFT
    radial = record.radial_densities()
    atoms = snap.atoms
    assert sorted(radial) == sorted(set(atoms.get_chemical_symbols()))
    sad = superpose(atoms.cell.array / Bohr, atoms.positions / Bohr, atoms.get_chemical_symbols(),
                    snap.grid.cartesian_points(), radial)
    np.testing.assert_allclose(sad.reshape(snap.grid.shape), snap.rho_sad, rtol=0, atol=1e-13)


def test_resume_reaches_the_model_of_an_uninterrupted_run(training_set, config, tmp_path):
    small = {"train.epochs": 4, "train.points_per_snapshot": 500, "train.batch_size": 64,
             "model.hidden_layers": [16, 16], "train.seed": 1}
    cfg = config(small)
    straight = run_train(cfg, [training_set], tmp_path / "a.pt", progress=False)
    first = run_train(cfg, [training_set], tmp_path / "b.pt", progress=False, stop_after=2)
    assert not first["finished"] and not (tmp_path / "b.pt").exists()
    assert first["epochs_run"] == 2 and (tmp_path / "b.pt.ckpt").is_file()
    resumed = run_train(cfg, [training_set], tmp_path / "b.pt", progress=False, resume=True)
    assert resumed["finished"] and resumed["epochs_run"] == 4
    a, b = load_model(tmp_path / "a.pt")[0], load_model(tmp_path / "b.pt")[0]
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    strip = [{k: v for k, v in h.items() if not k.endswith("_s")} for h in straight["history"]]
    assert strip == [{k: v for k, v in h.items() if not k.endswith("_s")}
                     for h in resumed["history"]]
    changed = config({**small, "train.learning_rate": 1e-2}, name="changed.toml")
    with pytest.raises(InputError, match="train.learning_rate"):
        run_train(changed, [training_set], tmp_path / "b.pt", progress=False, resume=True,
                  overwrite=True)


def test_split_is_by_snapshot(training_set, config):
    from mpi4py import MPI

    cfg = config({"train.validation_fraction": 0.5, "train.points_per_snapshot": 300})
    d = prepare_data(cfg, [training_set], MPI.COMM_SELF)
    train, val = set(d.train.snapshot.tolist()), set(d.val.snapshot.tolist())
    assert not train & val and train | val == {0, 1, 2, 3} and len(val) == 2
    assert sorted(d.train_idx + d.val_idx) == [0, 1, 2, 3]
    assert len(d.train.target) == 600 and len(d.val.target) == 600
    assert [d.labelled[i].key for i in range(4)] == KEYS
    stats = normalisation_stats(d.train, MPI.COMM_SELF)
    np.testing.assert_allclose(stats["x_mean"], d.train.x.mean(0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(stats["y_std"], d.train.target.std(), rtol=1e-13)
    two = prepare_data(cfg, [training_set, training_set], MPI.COMM_SELF)
    assert len(two.labelled) == 8 and len(two.val_idx) == 4 and two.data_sha256 != d.data_sha256
    first = two.train.target[two.train.snapshot == two.train_idx[0]]
    assert all(not np.array_equal(first, two.train.target[two.train.snapshot == i])
               for i in two.train_idx[1:]), "each snapshot of each file has its own sample"
    cases = [(1, .2), (2, .2), (4, .25), (10, .2), (3, .9), (5, 0)]
    assert [n_validation(n, f) for n, f in cases] == [0, 1, 1, 2, 2, 0]
    assert split(10, 0.3, 7) == split(10, 0.3, 7) and split(10, 0.3, 7) != split(10, 0.3, 8)


def test_validation_snapshots_are_spread_over_the_compositions():
    three = ["Si1"] * 4 + ["Ge1"] * 4 + ["Sn1"] * 4
    for seed in range(20):
        train, val = split(12, 0.25, seed, three)
        assert sorted(three[i] for i in val) == ["Ge1", "Si1", "Sn1"], seed
        assert sorted(train + val) == list(range(12))
    # a composition keeps a training snapshot while another has two left
    uneven = ["a"] * 3 + ["b", "c"]
    assert all({uneven[i] for i in split(5, 0.4, seed, uneven)[1]} == {"a"} for seed in range(10))
    big_small = ["a"] * 8 + ["b"] * 4
    for seed in range(10):
        train, val = split(12, 0.5, seed, big_small)
        assert sorted(big_small[i] for i in val) == ["a"] * 3 + ["b"] * 3
    assert split(12, 0.25, 3, three) != split(12, 0.25, 4, three)
    # one snapshot per composition: a composition may go only if its species stay in training
    ones = ["Si1", "Ge1", "Si0.5Ge0.5"]
    zs = [frozenset({14}), frozenset({32}), frozenset({14, 32})]
    for seed in range(10):
        train, val = split(3, 0.34, seed, ones, zs)
        assert len(val) == 1 and set().union(*(zs[i] for i in train)) == {14, 32}
    assert all(split(2, 0.5, seed, [ones[0], ones[2]], [zs[0], zs[2]]) == ([1], [0])
               for seed in range(10))                 # SiGe would take Ge out of training
    assert split(2, 0.5, 0, ones[:2], zs[:2]) == ([0, 1], [])


def test_without_validation_early_stopping_watches_the_training_loss(training_set, config,
                                                                     tmp_path, caplog):
    cfg = config({"train.validation_fraction": 0.0, "train.epochs": 2,
                  "train.points_per_snapshot": 200})
    with caplog.at_level("WARNING", logger="hpcdens.train"):
        s = run_train(cfg, [training_set], tmp_path / "m.pt", progress=False)
    assert "early stopping uses the training loss" in caplog.text
    assert s["early_stopping_on"] == "training loss" and s["n_validation_points"] == 0
    assert load_model(tmp_path / "m.pt")[1].training["validation_snapshots"] == []


def test_bad_input_is_reported_with_the_fix_before_any_work(training_set, config, tmp_path,
                                                            monkeypatch):
    cfg = config({"train.epochs": 1, "train.points_per_snapshot": 100})
    with pytest.raises(InputError, match="does not exist.*hpcdens generate"):
        run_train(cfg, [tmp_path / "missing.h5"], tmp_path / "m.pt")
    not_a_set = tmp_path / "junk.h5"
    not_a_set.write_text("junk")
    with pytest.raises(InputError, match="training set"):
        run_train(cfg, [not_a_set], tmp_path / "m.pt")
    (tmp_path / "m.pt").write_text("old model")
    monkeypatch.setattr("hpcdens.training.run.prepare_data",
                        lambda *a, **k: pytest.fail("work began"))
    with pytest.raises(InputError, match="--overwrite"):
        run_train(cfg, [training_set], tmp_path / "m.pt")
    with pytest.raises(InputError, match="no checkpoint.*without --resume"):
        run_train(cfg, [training_set], tmp_path / "m.pt", resume=True, overwrite=True)
    with pytest.raises(InputError, match="does not exist"):
        run_train(cfg, [training_set], tmp_path / "nodir" / "m.pt")


def _with_settings(src, dst, **changes):
    """A copy of the training set ``src`` whose snapshots record ``changes`` in their settings."""
    import json
    import shutil

    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for key in json.loads(f.attrs["snapshot_keys"]):
            g = f["snapshots"][key]
            g.attrs["settings"] = json.dumps({**json.loads(g.attrs["settings"]), **changes})
    return dst


def test_snapshots_of_other_dft_settings_are_refused_but_other_meshes_train(
        training_set, config, tmp_path):
    """Labels of another pseudopotential are another density: refused, naming both snapshots.
    Another mesh spacing is the same density: trained on, the record keeps the finest."""
    cfg = config({"train.epochs": 1, "train.points_per_snapshot": 100})
    other = _with_settings(training_set, tmp_path / "pade.h5", pseudo="gth-pade")
    with pytest.raises(InputError, match=r"different DFT settings: pseudo = 'gth-pbe' in "
                                         r".*train.*:.* but 'gth-pade' in .*pade.h5:"):
        run_train(cfg, [training_set, other], tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    finer = _with_settings(training_set, tmp_path / "fine.h5", mesh_spacing_bohr=0.25)
    run_train(cfg, [training_set, finer], tmp_path / "m.pt", progress=False)
    assert load_model(tmp_path / "m.pt")[1].dft["mesh_spacing_bohr"] == 0.25


def test_checkpoint_of_an_earlier_run_needs_resume_or_overwrite(training_set, config, tmp_path):
    cfg = config({"train.epochs": 1, "train.points_per_snapshot": 100})
    (tmp_path / "m.pt.ckpt").write_text("old checkpoint")
    with pytest.raises(InputError, match="pass --resume to continue it, or --overwrite"):
        run_train(cfg, [training_set], tmp_path / "m.pt")


def test_command_line_train_and_select_m(training_set, write_input, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="hpcdens")
    sub = parser.add_subparsers(dest="command")
    train_command.register(sub)
    select_m_command.register(sub)
    for name in ("train", "select-m"):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        assert "docs/commands/" in capsys.readouterr().out
    inp = write_input({**TINY, **TRAIN, "train.epochs": 5, "output.directory": str(tmp_path)})
    args = parser.parse_args(["train", str(inp), "--data", str(training_set), "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "validation (1 snapshots" in printed and (tmp_path / "model.pt").is_file()
    args = parser.parse_args(["select-m", str(inp), "--m", "4", "12", "--data", str(training_set)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    lines = (tmp_path / "select_m.csv").read_text().splitlines()
    assert lines[0].startswith("M,n_in,val_nrmse") and len(lines) == 3
    assert (tmp_path / "select_m.png").stat().st_size > 1000 and "*" in printed
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert all(float(r["val_nrmse"]) < float(r["baseline_nrmse"]) for r in rows)
    with pytest.raises(InputError, match="--overwrite"):
        run_select_m(load_config(inp), [4], [training_set])


def test_pure_helpers():
    for n, size in [(10, 3), (2, 3), (0, 2), (7, 1)]:
        blocks = [block_range(n, size, r) for r in range(size)]
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1
    assert steps_per_epoch(1000, 1, 128) == 8 and steps_per_epoch(1000, 3, 128) == 3
    assert steps_per_epoch(5, 3, 1) == 1


def test_density_weighted_points_and_the_kl_divisor(training_set, config, tmp_path):
    """[train] density_fraction draws training points where the SAD density is high (validation
    points stay uniform); kl_divisor = "grid" divides the KL by the grid points the sample stands
    for instead of the sampled points, "atoms" by the atoms of the training snapshots, an integer
    by itself."""
    from mpi4py import MPI

    item = load_snapshots([training_set])[0]
    sad = item.snapshot.rho_sad.reshape(-1)
    uniform, dense = (sample_points(item, 300, 0, f) for f in (0.0, 1.0))
    half = sample_points(item, 300, 0, 0.5)
    for idx in (uniform, dense, half):
        assert len(np.unique(idx)) == 300 and np.all(np.diff(idx) > 0)
    assert np.array_equal(half, sample_points(item, 300, 0, 0.5))
    weighted = float(np.sum(sad ** 2) / np.sum(sad))      # E[rho_SAD] at points drawn ~ rho_SAD
    assert sad[dense].mean() > 0.5 * (sad.mean() + weighted) > 1.1 * sad.mean()
    assert sad[dense].mean() > sad[half].mean() > sad[uniform].mean()

    base = {"train.points_per_snapshot": 300, "train.epochs": 4}
    plain = prepare_data(config(base), [training_set], MPI.COMM_SELF)
    changes = {**base, "train.density_fraction": 0.5, "train.kl_divisor": "grid"}
    both = prepare_data(config(changes, name="both.toml"), [training_set], MPI.COMM_SELF)
    assert plain.n_kl == plain.train.n_global == 300 * len(plain.train_idx)
    assert both.n_kl == sum(both.labelled[i].snapshot.grid.size for i in both.train_idx)
    assert np.array_equal(plain.val.target, both.val.target), "validation points stay uniform"
    assert not np.array_equal(plain.train.target, both.train.target)

    n_atoms = sum(len(plain.labelled[i].snapshot.atoms) for i in plain.train_idx)
    for divisor, n_kl in (("sampled", plain.n_kl), ("grid", both.n_kl), ("atoms", n_atoms), (7, 7)):
        cfg = config({**base, "train.kl_divisor": divisor}, name=f"{divisor}.toml")
        summary = run_train(cfg, [training_set], tmp_path / f"{divisor}.pt", progress=False)
        h = summary["history"][-1]        # loss = KL / N + NLL with N = n_kl
        assert (h["train_loss"] - h["train_nll"]) * n_kl == pytest.approx(h["train_kl"], rel=1e-6)
        assert load_model(tmp_path / f"{divisor}.pt")[1].config["train"]["kl_divisor"] == divisor
    with pytest.raises(InputError, match=r"\[train\] kl_divisor.*sampled, grid, atoms"):
        config({"train.kl_divisor": "points"}, name="bad.toml")
    for bad, why in ((0, ">= 1"), (2.5, "str or int")):
        with pytest.raises(InputError, match=rf"\[train\] kl_divisor = {bad}: must be .*{why}"):
            config({"train.kl_divisor": bad}, name="bad.toml")
    with pytest.raises(InputError, match=r"\[train\] density_fraction"):
        config({"train.density_fraction": 1.5}, name="bad2.toml")


def test_nll_beta_changes_the_fit_not_the_monitored_loss(training_set, config, tmp_path):
    """[train] nll_beta = 0.5 trains on the beta-NLL loss (other weights, so other epochs), while
    the history's train_nll and the validation loss stay Eq. 8's: loss - nll differs from KL / N
    by the weighting, and the setting is recorded in the model. Out of [0, 1] it is refused."""
    base = {"train.points_per_snapshot": 300, "train.epochs": 3}
    runs = {}
    for beta in (0.0, 0.5):
        cfg = config({**base, "train.nll_beta": beta}, name=f"beta{beta}.toml")
        runs[beta] = run_train(cfg, [training_set], tmp_path / f"beta{beta}.pt", progress=False)
        assert load_model(tmp_path / f"beta{beta}.pt")[1].config["train"]["nll_beta"] == beta
    plain, beta = runs[0.0]["history"], runs[0.5]["history"]
    assert plain[-1]["val_loss"] != pytest.approx(beta[-1]["val_loss"], rel=1e-9)
    h = plain[0]                          # Eq. 8: loss = KL / N + nll
    n_kl = h["train_kl"] / (h["train_loss"] - h["train_nll"])
    h = beta[0]                           # beta-NLL: the data term is not the reported nll
    assert h["train_loss"] - h["train_kl"] / n_kl != pytest.approx(h["train_nll"], rel=1e-6)
    with pytest.raises(InputError, match=r"\[train\] nll_beta = 2.0: must be in \[0, 1\]"):
        config({"train.nll_beta": 2}, name="bad.toml")


def test_lr_patience_halves_the_rate_and_a_resumed_run_keeps_it(training_set, config, tmp_path):
    """[train] lr_patience = k: after every k-th epoch in a row without a better validation loss
    the learning rate halves, and stays halved after an improvement; the number of halvings is
    in the checkpoint, so a resumed run follows the uninterrupted one bit for bit."""
    base = {"train.points_per_snapshot": 300, "train.epochs": 10, "train.patience": 10,
            "train.learning_rate": 0.1, "train.lr_patience": 1}
    cfg = config(base, name="decay.toml")
    whole = run_train(cfg, [training_set], tmp_path / "whole.pt", progress=False)["history"]
    assert not any("rolled_back_to" in h for h in whole)   # no loss spike at this rate
    best, bad, halvings = np.inf, 0, 0
    for h in whole:
        assert h["learning_rate"] == 0.1 * 0.5 ** halvings
        if h["val_loss"] < best:
            best, bad = h["val_loss"], 0
        else:
            bad, halvings = bad + 1, halvings + 1
    assert halvings >= 2, "the test needs epochs without improvement"
    run_train(cfg, [training_set], tmp_path / "parts.pt", progress=False, stop_after=5)
    resumed = run_train(cfg, [training_set], tmp_path / "parts.pt", progress=False,
                        resume=True)["history"]
    keys = ("learning_rate", "train_loss", "val_loss")
    assert [[h[k] for k in keys] for h in resumed] == [[h[k] for k in keys] for h in whole]
    with pytest.raises(InputError, match=r"\[train\] lr_patience"):
        config({"train.lr_patience": -1}, name="bad.toml")


def test_a_loss_spike_goes_back_to_the_best_weights_at_half_the_rate(training_set, config,
                                                                      tmp_path, monkeypatch):
    """An epoch whose validation loss jumps more than SPIKE_NATS above the best epoch's is undone:
    the next epoch starts from the best epoch's weights with a fresh optimizer at half the rate,
    the epoch is in the history (``rolled_back_to``) and the record counts it; the sixth spike
    stops the training with the fix. The spike is made by a real epoch whose weight means are
    then thrown 3 (normalised units) off at random."""
    from hpcdens.training import loop

    real = loop.bnn.train_epoch
    seen = {"calls": 0, "starts": [], "moments": []}

    def spiking(net, optimizer, batches, n_train, gen, max_grad_norm, nll_beta, spike_at=(4,)):
        seen["calls"] += 1
        seen["starts"].append({k: v.detach().clone() for k, v in net.state_dict().items()})
        seen["moments"].append(len(optimizer.state))
        terms = real(net, optimizer, batches, n_train, gen, max_grad_norm, nll_beta)
        if seen["calls"] in spike_at:
            with torch.no_grad():
                for name, p in net.named_parameters():
                    if name.endswith("_mu"):
                        p.add_(3.0 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        return terms

    monkeypatch.setattr(loop.bnn, "train_epoch", spiking)
    cfg = config({"train.points_per_snapshot": 300, "train.epochs": 7, "train.patience": 10},
                 name="spike.toml")
    summary = run_train(cfg, [training_set], tmp_path / "spike.pt", progress=False)
    hist = summary["history"]
    assert [("rolled_back_to" in h) for h in hist] == [False] * 3 + [True] + [False] * 3
    assert summary["rollbacks"] == 1
    best = hist[3]["rolled_back_to"]
    assert best == min(range(1, 4), key=lambda e: hist[e - 1]["val_loss"])
    assert hist[3]["val_loss"] > hist[best - 1]["val_loss"] + loop.SPIKE_NATS
    assert [h["learning_rate"] for h in hist] == [3e-3] * 4 + [1.5e-3] * 3
    assert seen["moments"][4] == 0 < seen["moments"][3]   # a fresh optimizer after the spike
    # epoch 5 starts from the best epoch's weights (epoch `best` ended where epoch best+1 began)
    start5, after_best = seen["starts"][4], seen["starts"][best]
    assert all(torch.equal(start5[k], after_best[k]) for k in start5)
    _, record = load_model(tmp_path / "spike.pt")
    assert record.training["rollbacks"] == 1

    seen["calls"] = 0
    monkeypatch.setattr(loop.bnn, "train_epoch",
                        lambda *a, **k: spiking(*a, **k, spike_at=range(2, 100)))
    with pytest.raises(loop.TrainingDiverged, match="blew up 6 times.*learning_rate"):
        run_train(cfg, [training_set], tmp_path / "diverge.pt", progress=False)
