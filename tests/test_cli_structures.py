"""`hpcdens structures`: the file ASE reads back, exact counts, bit-for-bit reruns."""

from ase.io import read

from hpcdens.cli import main


def run(inp, out, *extra):
    return main(["structures", str(inp), "--out", str(out), *extra])


def test_structures_file_reads_back_and_repeats_bit_for_bit(write_input, tmp_path):
    inp = write_input({"compositions.list": ["Si0.25Ge0.75", "Si0.5Ge0.5"], "compositions.tessellation": "T1",
                       "system.supercell": [2, 1, 1], "snapshots.vacancies": 1})
    out = tmp_path / "s.extxyz"
    assert run(inp, out) == 0
    frames = read(out, ":")
    assert len(frames) == 4 * 2, "T1 (2) + list (2) compositions x 2 snapshots"
    assert all(len(a) == 16 - 1 for a in frames), "16 sites minus one vacancy"
    first = frames[0]
    assert first.info["requested_composition"] == "Si0.25Ge0.75"
    assert sorted(first.get_chemical_symbols()).count("Ge") in (11, 12), "12 Ge of 16, one may be the vacancy"
    assert frames[0].positions.tolist() != frames[1].positions.tolist(), "snapshots differ"
    data = out.read_bytes()
    assert run(inp, out, "--overwrite") == 0
    assert out.read_bytes() == data, "a seeded rerun must give the same file bit for bit"


def test_checkerboard_from_input_file(write_input, tmp_path):
    inp = write_input({"compositions.list": None, "system.supercell": [2, 2, 2],
                       "snapshots.checkerboard_bins": 2, "snapshots.method": "none",
                       "snapshots.per_composition": 1,
                       "snapshots.checkerboard_compositions": ["Si1", "Ge1"]})
    out = tmp_path / "cb.extxyz"
    assert run(inp, out) == 0
    (atoms,) = read(out, ":")
    assert atoms.get_chemical_symbols().count("Si") == 32 and atoms.info["segregation_bins"] == 2
    frac = atoms.get_scaled_positions() % 1.0
    block = (frac * 2 + 1e-6).astype(int).sum(axis=1) % 2
    symbols = atoms.get_chemical_symbols()
    assert all(symbols[i] == ("Si" if block[i] == 0 else "Ge") for i in range(len(atoms)))
