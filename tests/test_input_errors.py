"""Bad input files and options: exit code 2, one message naming the key, nothing written."""

import subprocess
import sys

import pytest

from hpcdens.cli import main
from hpcdens.config import load_config

# (changes to the base input, words the message must contain)
BAD_INPUTS = {
    "unknown element": ({"system.elements": ["Si", "Gx"]}, ["elements", "'Gx'", "Ge"]),
    "unknown learn score": ({"learn.score": "energi"}, ["[learn] score", "'energi'", "energy"]),
    "unknown learn pick": ({"learn.pick": "peaks"}, ["[learn] pick", "'peaks'", "separated"]),
    "fractions not summing to 1": ({"compositions.list": ["Si0.5Ge0.4"]}, ["list", "Si0.5Ge0.4", "sum"]),
    "negative fraction": ({"compositions.list": ["Si1.5Ge-0.5"]}, ["list", "-0.5", "[0, 1]"]),
    "empty composition": ({"compositions.list": [""]}, ["list", "empty"]),
    "composition element not in system": ({"compositions.list": ["Si0.5Sn0.5"]}, ["list", "Sn"]),
    "unknown lattice": ({"system.lattice": "hcp"}, ["lattice", "'hcp'", "diamond"]),
    "misspelt lattice": ({"system.lattice": "dimond"}, ["lattice", "did you mean 'diamond'"]),
    "non-integer supercell": ({"system.supercell": [2, 2.5, 2]}, ["supercell", "int"]),
    "zero supercell": ({"system.supercell": [0, 1, 1]}, ["supercell", ">= 1"]),
    "missing required key": ({"system.elements": None}, ["elements", "required"]),
    "unknown key": ({"dft.mesh_spacing": 0.4}, ["mesh_spacing", "did you mean 'mesh_spacing_bohr'"]),
    "unknown section": ({"dtf.backend": "pyscf"}, ["dtf", "did you mean 'dft'"]),
    "wrong type": ({"dft.mesh_spacing_bohr": "0.4"}, ["mesh_spacing_bohr", "float"]),
    "M <= 0": ({"descriptors.n_neighbors": 0}, ["n_neighbors", "M must be >= 1"]),
    "N_s <= 0": ({"model.n_samples": 0}, ["n_samples", "N_s must be >= 1"]),
    "mesh spacing <= 0": ({"dft.mesh_spacing_bohr": -0.4}, ["mesh_spacing_bohr", "> 0"]),
    "negative temperature": ({"snapshots.temperature_kelvin": -5.0}, ["temperature_kelvin", ">= 0"]),
    "negative smearing": ({"dft.smearing_kelvin": -1.0}, ["smearing_kelvin", ">= 0"]),
    "too many vacancies": ({"snapshots.vacancies": 8}, ["vacancies", "8 of the 8"]),
    "checkerboard bins do not divide": (
        {"system.supercell": [2, 2, 2], "snapshots.checkerboard_bins": 3,
         "snapshots.checkerboard_compositions": ["Si0.8Ge0.2", "Si0.2Ge0.8"]},
        ["checkerboard_bins", "does not divide"]),
    "unknown backend": ({"dft.backend": "vasp"}, ["backend", "pyscf"]),
    "no compositions": ({"compositions.list": None}, ["compositions", "no compositions"]),
}


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    return d


def assert_untouched(outdir):
    assert sorted(p.name for p in outdir.iterdir()) == ["keep.txt"]
    assert (outdir / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_names_key_writes_nothing(case, write_input, outdir, capsys):
    changes, words = BAD_INPUTS[case]
    path = write_input(changes)
    code, err = run_cli(["structures", str(path), "--out", str(outdir / "s.extxyz")], capsys)
    assert code == 2, err
    for word in words:
        assert word in err, f"{word!r} not in message: {err}"
    assert "Traceback" not in err
    assert err.count("\n") == 1, "one message line"
    assert_untouched(outdir)


def test_output_into_missing_directory(write_input, tmp_path, capsys):
    code, err = run_cli(["structures", str(write_input()), "--out", str(tmp_path / "nope" / "s.extxyz")],
                        capsys)
    assert code == 2 and "does not exist" in err and "mkdir" in err
    assert not (tmp_path / "nope").exists()


def test_existing_output_needs_overwrite(write_input, outdir, capsys):
    code, err = run_cli(["structures", str(write_input()), "--out", str(outdir / "keep.txt")], capsys)
    assert code == 2 and "--overwrite" in err
    assert_untouched(outdir)


def test_missing_input_file(tmp_path, capsys):
    code, err = run_cli(["structures", str(tmp_path / "none.toml")], capsys)
    assert code == 2 and "does not exist" in err


def test_invalid_toml(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[system\nelements = ")
    code, err = run_cli(["structures", str(path)], capsys)
    assert code == 2 and "not valid TOML" in err


STRUCTURE_FILES = {
    "unreadable": ("garbage.xyz", "this is not\na structure file \x00\x01\n", ["structure_file"]),
    "empty": ("empty.extxyz", "", ["structure_file", "empty"]),
    "atoms too close": ("close.extxyz", None, ["structure_file", "0.5"]),
}


@pytest.mark.parametrize("case", list(STRUCTURE_FILES))
def test_bad_structure_file(case, write_input, tmp_path, outdir, capsys):
    from ase import Atoms
    from ase.io import write

    name, text, words = STRUCTURE_FILES[case]
    path = tmp_path / name
    if text is None:
        write(path, Atoms("Si2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[5, 5, 5], pbc=True))
    else:
        path.write_text(text)
    inp = write_input({"system.structure_file": name})
    code, err = run_cli(["structures", str(inp), "--out", str(outdir / "s.extxyz")], capsys)
    assert code == 2, err
    for word in words:
        assert word in err, f"{word!r} not in message: {err}"
    assert_untouched(outdir)


def test_example_inputs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "inputs"
    names = sorted(p.stem for p in root.glob("*.toml"))
    assert {"demo", "sige", "sigesn", "crfeconi", "alcrfeconi"} <= set(names)
    sizes = {n: load_config(root / f"{n}.toml").system.n_sites() for n in names}
    assert sizes["sigesn"] == 64 and sizes["crfeconi"] == 32
    assert load_config(root / "crfeconi.toml").dft.mesh_spacing_bohr == 0.2
    assert load_config(root / "sigesn.toml").descriptors.n_neighbors == 55
    # every input file shipped loads, the reproduction study's too; a checkerboard input needs
    # no [compositions] section (its composition is the mean of the two checkerboard ones)
    study = {p.stem: load_config(p) for p in sorted((root / "reproduction").glob("*.toml"))}
    assert {"sigesn-bayesian", "sigesn-tessellation", "sigesn-random", "sigesn-test"} <= set(study)
    for strategy in ("bayesian", "tessellation", "random"):
        assert study[f"sigesn-{strategy}"].learn.strategy == strategy
    board = study["sigesn-checkerboard"]
    assert not board.compositions.requested() and board.snapshots.checkerboard_bins == 2
    # the CrFeCoNi study: every strategy's labels come from the pool, so [system], [snapshots] and
    # [dft] must be the pool's; the test set differs only in compositions and MD seed
    crfeconi = {p.stem: load_config(p) for p in sorted((root / "reproduction-crfeconi").glob("*.toml"))}
    pool = crfeconi["crfeconi-pool"]
    assert pool.system.n_sites() == 16 and pool.dft.mesh_spacing_bohr == 0.2
    for strategy in ("bayesian", "tessellation", "random"):
        run = crfeconi[f"crfeconi-{strategy}"]
        assert run.learn.strategy == strategy and run.model.target == "delta_rho"
        assert (run.system, run.snapshots, run.dft) == (pool.system, pool.snapshots, pool.dft)
    test = crfeconi["crfeconi-test"]
    assert (test.system, test.dft) == (pool.system, pool.dft) and test.snapshots.seed != pool.snapshots.seed


def test_reproduction64_inputs_share_the_pool():
    """The 64-atom study (launch/reproduce_sigesn64.sh): every input loads; the learn runs and the
    AL2 lever inputs label with the pool's [system], [snapshots] and [dft] (so their labels are
    copied from it), and the learn runs train as the measured lever sigesn-al2-beta-dens does."""
    import dataclasses
    from pathlib import Path

    from hpcdens import plan

    root = Path(__file__).resolve().parents[1] / "inputs" / "reproduction64"
    study = {p.stem: load_config(p) for p in sorted(root.glob("**/*.toml"))}
    pool = study["sigesn-pool"]
    assert pool.system.n_sites() == 64 and len(plan.compositions(pool)) == 15
    lever = study["sigesn-al2-beta-dens"]
    assert lever.train.nll_beta == 0.5 and lever.train.density_fraction == 0.5
    for name in ("sigesn-bayesian", "sigesn-bayesian-separated", "sigesn-tessellation",
                 "sigesn-random", "sigesn-al2", "sigesn-al2-beta", "sigesn-al2-beta-dens",
                 "sigesn-al2-delta"):
        run = study[name]
        assert (run.system, run.snapshots, run.dft) == (pool.system, pool.snapshots, pool.dft), name
    for strategy in ("bayesian", "tessellation", "random"):
        run = study[f"sigesn-{strategy}"]
        assert run.learn.strategy == strategy
        assert (run.train, run.model) == (lever.train, lever.model), strategy
    separated, bayesian = study["sigesn-bayesian-separated"], study["sigesn-bayesian"]
    assert (separated.learn.pick, bayesian.learn.pick) == ("separated", "top")
    assert dataclasses.replace(separated.learn, pick="top") == bayesian.learn
    assert (separated.train, separated.model) == (lever.train, lever.model)
    assert {"vacancy64", "divacancy216", "checkerboard216-27bin"} <= set(study)


def test_console_script_help_version_and_exit_code(tmp_path):
    exe = [sys.executable, "-m", "hpcdens.cli"]  # cli.run, the console script's entry point
    out = subprocess.run(exe + ["--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "structures" in out.stdout
    out = subprocess.run(exe + ["--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("hpcdens ")
    out = subprocess.run(exe + ["structures", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--overwrite" in out.stdout
    out = subprocess.run(exe + ["structures", str(tmp_path / "none.toml")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_every_key_is_documented():
    import dataclasses
    from pathlib import Path

    from hpcdens.config import SECTIONS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "input-file.md").read_text()
    for section, cls in SECTIONS.items():
        assert f"## `[{section}]`" in doc
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in doc, f"[{section}] {f.name} missing from docs/input-file.md"
