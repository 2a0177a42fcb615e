"""Every input file that cannot be decoded (random bytes where text, HDF5 or a model is expected)
ends with exit code 2 and one line naming the file, never a traceback, and writes nothing."""

import numpy as np
import pytest

from hpcdens.cli import main

from tests.cells import si8

CONFIG_COMMANDS = [["structures"], ["generate"], ["train"], ["select-m", "--m", "4"], ["learn"]]


@pytest.fixture
def garbage(tmp_path):
    """garbage(name) -> a file of 4 kB of random bytes (invalid UTF-8, no HDF5 signature)."""
    rng = np.random.default_rng(0)

    def make(name):
        path = tmp_path / name
        path.write_bytes(b"\xff\xfe" + rng.bytes(4096))
        return path
    return make


def _one_line_exit_2(capsys, argv, *words):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda c: c[0])
def test_binary_input_file(capsys, garbage, command):
    path = garbage("input.toml")
    _one_line_exit_2(capsys, [command[0], str(path), *command[1:]], str(path), "UTF-8")


def test_binary_structure_and_model_files(capsys, garbage, tmp_path):
    from ase.io import write

    from hpcdens.bench.predict import write_random_model

    model = tmp_path / "m.pt"
    write_random_model(model, m=4, hidden_layers=(8,), n_samples=2)
    structure = tmp_path / "si8.extxyz"
    write(structure, si8())
    out = tmp_path / "pred.h5"
    _one_line_exit_2(capsys, ["predict", str(model), str(garbage("bad.extxyz")), "--out", str(out)],
                     "bad.extxyz")
    _one_line_exit_2(capsys, ["predict", str(garbage("bad.pt")), str(structure), "--out", str(out)],
                     "bad.pt")
    assert not out.exists()


@pytest.mark.parametrize("argv", [["energy", "{bad}"], ["export", "{bad}", "--cube", "{out}"],
                                  ["evaluate", "{model}", "{bad}", "--out", "{out}"]],
                         ids=lambda a: a[0])
def test_binary_hdf5_files(capsys, garbage, tmp_path, argv):
    from hpcdens.bench.predict import write_random_model

    model = tmp_path / "m.pt"
    write_random_model(model, m=4, hidden_layers=(8,), n_samples=2)
    bad, out = garbage("bad.h5"), tmp_path / "out"
    argv = [a.format(bad=bad, out=out, model=model) for a in argv]
    _one_line_exit_2(capsys, argv, "bad.h5")
    assert not out.exists()
