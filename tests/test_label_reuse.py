"""Label pools: `hpcdens generate --reuse POOL` and `hpcdens learn --reuse-labels POOL` copy the
snapshots a pool made with the same structure and DFT settings holds, and label only the others.

Real PySCF labels of the problems TINY (2-atom cells) and LEARN (4-atom cells) of
tests/input_helpers.py, about a second per snapshot."""

import contextlib
import io
import json

import h5py
import numpy as np
import pytest
import torch

from hpcdens.cli import main
from hpcdens.config import load_config
from hpcdens.io.training_set import parts_dir, snapshot_attrs
from hpcdens.learning.loop import read_state, run_learn
from tests.input_helpers import KEYS, LEARN, TINY, write_input_file
from tests.mpi_helpers import on_every_rank, on_rank0

MIXED_AND_GE = {**TINY, "compositions.list": ["Si0.5Ge0.5", "Ge1"]}   # 1 pool composition + 1 new


def generate(*argv):
    return main(["generate", *map(str, argv), "--no-progress"])


def contents(path) -> dict:
    """``{key: (attributes, {dataset: array})}`` of every snapshot of a training set, in order."""
    with h5py.File(path, "r") as f:
        return {key: (dict(f["snapshots"][key].attrs),
                      {k: v[...] for k, v in f["snapshots"][key].items()})
                for key in json.loads(f.attrs["snapshot_keys"])}


def assert_bitwise(a: tuple, b: tuple, ignore=()):
    """Two snapshots (from :func:`contents`) are equal bit for bit, but the attributes ``ignore``."""
    attrs_a, attrs_b = ({k: v for k, v in x.items() if k not in ignore} for x in (a[0], b[0]))
    assert attrs_a.keys() == attrs_b.keys()
    for k in attrs_a:
        np.testing.assert_array_equal(attrs_a[k], attrs_b[k], err_msg=k)
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert a[1][k].dtype == b[1][k].dtype and a[1][k].tobytes() == b[1][k].tobytes(), k


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A pool of 2 compositions (Si, Si0.5Ge0.5) x 2 snapshots, labelled serially."""
    d = tmp_path_factory.mktemp("pool")
    out = d / "pool.h5"
    assert generate(write_input_file(d / "pool.toml", TINY), "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def more(pool, tmp_path_factory):
    """MIXED_AND_GE labelled with the pool: (training set, printed lines)."""
    d = tmp_path_factory.mktemp("more")
    out, printed = d / "more.h5", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert generate(write_input_file(d / "more.toml", MIXED_AND_GE), "--out", out,
                        "--reuse", pool) == 0
    return out, printed.getvalue()


def test_reuse_labels_only_what_the_pool_lacks(pool, more):
    out, printed = more
    assert "(2 now, 2 reused, on 1 ranks)" in printed
    got, ref = contents(out), contents(pool)
    mixed, new = KEYS[2:], ["Si0_Ge1/s000", "Si0_Ge1/s001"]
    assert list(got) == mixed + new, "plan order"
    for key in mixed:
        assert got[key][0]["reused_from"] == str(pool.resolve())
        assert_bitwise(got[key], ref[key], ignore=("reused_from",))
    pool_runs = {a[0]["run_id"] for a in ref.values()}
    for key in new:                                   # labelled now, by this run
        assert "reused_from" not in got[key][0] and got[key][0]["run_id"] not in pool_runs
        assert got[key][0]["n_electrons"] == 8.0 and got[key][0]["wall_time_s"] > 0


def test_of_two_pools_the_first_gives_and_finished_parts_stay(pool, more, tmp_path, capsys):
    """Si1 only in ``pool``, Si0.5Ge0.5 in both, Ge1 only in ``first``; resumed with --extend,
    the finished parts stay as they are."""
    first = more[0]
    inp = write_input_file(tmp_path / "b.toml", {**TINY, "compositions.list": ["Si1", "Si0.5Ge0.5",
                                                                              "Ge1"]})
    out = tmp_path / "both.h5"
    assert generate(inp, "--out", out, "--reuse", first, "--reuse", pool) == 0
    assert "(0 now, 6 reused" in capsys.readouterr().out
    got, ref = contents(out), contents(first)
    assert [a["reused_from"] for a, _ in got.values()] == [str(pool.resolve())] * 2 + \
        [str(first.resolve())] * 4
    for key in ref:
        assert_bitwise(got[key], ref[key], ignore=("reused_from",))
    before = {p.name: p.read_bytes() for p in parts_dir(out).glob("*.h5")}
    assert generate(inp, "--out", out, "--extend", "--reuse", pool) == 0
    assert "(0 now, 0 reused" in capsys.readouterr().out
    assert before == {p.name: p.read_bytes() for p in parts_dir(out).glob("*.h5")}


@pytest.mark.parametrize("change", [{"dft.mesh_spacing_bohr": 0.5},
                                    {"dft.smearing_kelvin": 1000.0},
                                    {"snapshots.seed": 4}])
def test_pool_with_other_settings_is_refused_and_nothing_written(pool, tmp_path, capsys, change):
    inp = write_input_file(tmp_path / "other.toml", {**MIXED_AND_GE, **change})
    out = tmp_path / "other.h5"
    assert generate(inp, "--out", out, "--reuse", pool) == 2
    err = capsys.readouterr().err
    assert "other structure or DFT settings" in err and str(pool) in err and "Fix:" in err
    assert not out.exists() and not parts_dir(out).exists()


def test_missing_or_incomplete_pool_is_refused(pool, tmp_path, capsys):
    inp = write_input_file(tmp_path / "in.toml", MIXED_AND_GE)
    out = tmp_path / "x.h5"
    assert generate(inp, "--out", out, "--reuse", tmp_path / "none.h5") == 2
    assert "does not exist" in capsys.readouterr().err
    part = next(parts_dir(pool).glob("*.h5"))           # one snapshot, not a training set
    assert generate(inp, "--out", out, "--reuse", part) == 2
    assert "not a complete hpcdens training set" in capsys.readouterr().err
    assert not out.exists() and not parts_dir(out).exists()


def test_learn_refuses_a_pool_of_other_settings_before_writing(pool, tmp_path, capsys):
    inp = write_input_file(tmp_path / "learn.toml", LEARN)          # 4-atom cells, pool: 2-atom
    assert main(["learn", str(inp), "--out", str(tmp_path / "run"), "--reuse-labels", str(pool),
                 "--no-plots", "--no-progress"]) == 2
    assert "other structure or DFT settings" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("torch_one_thread")
def test_learn_with_reused_labels_makes_the_same_choices_and_weights(tmp_path):
    """A bayesian run's training set as the pool of a second run: the second run computes no
    label, and journals the same choices, scores, weights and SCF wall times."""
    torch.set_num_threads(1)
    inp = write_input_file(tmp_path / "learn.toml", {**LEARN, "train.epochs": 4,
                                                     "learn.score_points": 200})
    ref = run_learn(load_config(inp), tmp_path / "ref")
    pool = tmp_path / "ref" / "train.h5"
    assert main(["learn", str(inp), "--out", str(tmp_path / "reuse"), "--reuse-labels", str(pool),
                 "--no-plots", "--no-progress"]) == 0
    state = read_state(tmp_path / "reuse")
    assert len(state["rounds"]) == len(ref["rounds"]) == 2
    for mine, theirs in zip(state["rounds"], ref["rounds"]):
        for field in ("training", "new", "chosen", "scores", "weights_sha256", "new_snapshots",
                      "dft_wall_s"):
            assert mine.get(field) == theirs.get(field), field
        assert mine["reused_snapshots"] == mine["new_snapshots"] > 0
        assert theirs["reused_snapshots"] == 0
    reused, labelled = snapshot_attrs(tmp_path / "reuse" / "train.h5"), snapshot_attrs(pool)
    assert list(reused) == list(labelled)
    assert all(reused[k]["run_id"] == labelled[k]["run_id"] for k in reused), "no SCF run again"


@pytest.mark.mpi(min_size=2)
def test_generate_with_a_pool_on_n_ranks_equals_serial(mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.labelling import run_generate

    comm = MPI.COMM_WORLD

    def setup():
        pool_inp = write_input_file(mpi_tmp_path / "pool.toml", {**TINY, "compositions.list":
                                                                 ["Si1"]})
        run_generate(load_config(pool_inp), mpi_tmp_path / "pool.h5", MPI.COMM_SELF,
                     progress=False)
        return write_input_file(mpi_tmp_path / "in.toml", TINY)

    inp = on_rank0(comm, setup)                 # one writer: no torn reads
    config, pool = load_config(inp), mpi_tmp_path / "pool.h5"
    summary = run_generate(config, mpi_tmp_path / "par.h5", comm, progress=False, reuse=[pool])

    def counts():
        assert summary["reused"] == 2 and summary["labelled_now"] == 2, summary

    on_every_rank(comm, counts)

    def equals_serial():
        run_generate(config, mpi_tmp_path / "ser.h5", MPI.COMM_SELF, progress=False, reuse=pool)
        par, ser = contents(mpi_tmp_path / "par.h5"), contents(mpi_tmp_path / "ser.h5")
        with h5py.File(mpi_tmp_path / "par.h5") as a, h5py.File(mpi_tmp_path / "ser.h5") as b:
            assert dict(a.attrs) == dict(b.attrs)
        assert list(par) == list(ser) == KEYS
        ref = contents(pool)
        for key in KEYS[:2]:                    # reused: the pool's bits in both
            assert_bitwise(par[key], ser[key])
            assert_bitwise(par[key], ref[key], ignore=("reused_from",))
        for key in KEYS[2:]:                    # labelled: on some rank, or serially
            assert "reused_from" not in par[key][0] and "reused_from" not in ser[key][0]
            assert abs(par[key][0]["energy_ha"] - ser[key][0]["energy_ha"]) < 1e-7
            rho = ser[key][1]["rho"]
            np.testing.assert_allclose(par[key][1]["rho"], rho, atol=1e-6 * rho.max())

    on_rank0(comm, equals_serial)
