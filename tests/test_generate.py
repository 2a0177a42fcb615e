"""`hpcdens generate`: the training-set file, restart after SIGKILL, failures, existing outputs.

Real PySCF labels of 2-atom primitive diamond cells on a coarse mesh (about a second each): the
problem TINY of tests/input_helpers.py."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from hpcdens.cli import main
from hpcdens.config import load_config
from hpcdens.io.training_set import parts_dir, read_training_set
from hpcdens.plan import build_plan
from tests.input_helpers import KEYS, TINY, write_input_file


def generate(*argv):
    return main(["generate", *map(str, argv), "--no-progress"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial run: (input path, training-set path)."""
    d = tmp_path_factory.mktemp("ref")
    inp = write_input_file(d / "tiny.toml", TINY)
    out = d / "train.h5"
    assert generate(inp, "--out", out) == 0
    return inp, out


def test_training_set_holds_every_snapshot_with_its_charge(reference):
    inp, out = reference
    snaps = read_training_set(out)
    assert [s.key for s in snaps] == KEYS
    tasks = {t.key: t for t in build_plan(load_config(inp))}
    for s in snaps:
        ne = s.attrs["n_electrons"]
        assert ne == 8.0, "Si and Ge GTH pseudopotentials: 4 valence electrons each"
        assert abs(s.grid.integrate(s.rho) - ne) < 1e-6 * ne
        assert abs(s.grid.integrate(s.rho_sad) - ne) < 1e-6 * ne
        ref = tasks[s.key].build_atoms()
        np.testing.assert_array_equal(s.atoms.numbers, ref.numbers)
        np.testing.assert_allclose(s.atoms.positions, ref.positions, atol=1e-12)
        assert s.attrs["complete"] and s.attrs["backend"] == "pyscf"
        assert s.settings["basis"] and s.rho.shape == s.grid.shape
    with h5py.File(out) as f:
        assert f.attrs["version"] == 1 and f.attrs["complete"] and f.attrs["n_snapshots"] == 4


def test_existing_training_set_needs_extend_or_overwrite(reference, tmp_path, capsys):
    inp, out = reference
    assert generate(inp, "--out", out) == 2
    assert "--extend" in capsys.readouterr().err


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_then_restart_loses_nothing_and_repeats_nothing(reference, tmp_path):
    inp, ref_out = reference
    out = tmp_path / "train.h5"
    cmd = [sys.executable, "-m", "hpcdens.cli", "generate", str(inp), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = parts_dir(out)
    deadline = time.time() + 300
    while time.time() < deadline and not list(parts.glob("*.h5")) and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.name: _digest(p) for p in parts.glob("*.h5")}
    assert 1 <= len(first) < 4, f"kill came too late or too early: {sorted(first)}"
    assert not out.exists(), "a killed run must not leave a training set that looks finished"

    assert generate(inp, "--out", out) == 0
    after = {p.name: _digest(p) for p in parts.glob("*.h5")}
    assert all(after[name] == digest for name, digest in first.items()), "finished parts rewritten"
    snaps = {s.key: s for s in read_training_set(out)}
    assert sorted(snaps) == sorted(KEYS)
    run_ids = [s.attrs["run_id"] for s in snaps.values()]
    assert len(set(run_ids)) == 2 and sum(r == run_ids[-1] for r in run_ids) == 4 - len(first)
    for ref in read_training_set(ref_out):
        np.testing.assert_allclose(snaps[ref.key].attrs["energy_ha"], ref.attrs["energy_ha"], atol=1e-7)
        np.testing.assert_allclose(snaps[ref.key].rho, ref.rho, atol=1e-6 * ref.rho.max())


def test_failed_scf_is_reported_not_stored(write_input, tmp_path, capsys):
    inp = write_input({**TINY, "compositions.list": ["Si1"], "snapshots.per_composition": 1,
                       "dft.max_scf_cycles": 1})
    out = tmp_path / "fail.h5"
    assert generate(inp, "--out", out) == 1
    printed = capsys.readouterr().out
    assert "FAILED Si1_Ge0/s000" in printed and "0 of 1 snapshots" in printed
    assert read_training_set(out) == []
    with h5py.File(out) as f:
        assert "Si1_Ge0/s000" in f["failures"].attrs


def test_extend_labels_only_new_compositions_and_settings_are_checked(write_input, tmp_path, capsys):
    base = {**TINY, "compositions.list": ["Si1"], "snapshots.per_composition": 1}
    out = tmp_path / "ext.h5"
    assert generate(write_input(base), "--out", out) == 0
    more = write_input({**base, "compositions.list": ["Si1", "Si0.5Ge0.5"]}, name="more.toml")
    assert generate(more, "--out", out, "--extend") == 0
    assert "(1 now" in capsys.readouterr().out
    assert [s.key for s in read_training_set(out)] == ["Si1_Ge0/s000", "Si0.5_Ge0.5/s000"]
    finer = write_input({**base, "dft.mesh_spacing_bohr": 0.5}, name="finer.toml")
    assert generate(finer, "--out", out, "--extend") == 2
    assert "other structure or DFT settings" in capsys.readouterr().err
