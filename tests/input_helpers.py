"""Input files of the tests: the base input, the small problems several test modules share, and
the one writer of a TOML input file (``write_input_file``; the ``write_input`` fixture of
tests/conftest.py writes through it)."""

from pathlib import Path

BASE_INPUT = {
    "name": "t",
    "system": {"elements": ["Si", "Ge"], "lattice": "diamond", "supercell": [1, 1, 1]},
    "compositions": {"list": ["Si0.5Ge0.5", "Si1"]},
    "snapshots": {"per_composition": 2, "method": "rattle", "seed": 3},
    "dft": {"backend": "pyscf", "mesh_spacing_bohr": 0.5},
}

# Real PySCF labels of 2-atom primitive diamond cells (Si and Si0.5Ge0.5, two rattled snapshots
# each) on a coarse mesh, 13^3 grid points, about a second each: the training set of
# tests/test_generate.py, test_train.py, test_train_mpi.py and test_evaluate.py.
TINY = {
    "system.primitive": True,
    "compositions.list": ["Si1", "Si0.5Ge0.5"],
    "snapshots.per_composition": 2,
    "snapshots.rattle_stdev_angstrom": 0.03,
    "dft.mesh_spacing_bohr": 0.6,
    "dft.scf_tol": 1e-8,
}
KEYS = ["Si1_Ge0/s000", "Si1_Ge0/s001", "Si0.5_Ge0.5/s000", "Si0.5_Ge0.5/s001"]

# Training on TINY: M = 12, a 60-32-32-2 network, all grid points, one validation snapshot, 15
# epochs (tests/test_train.py and test_train_mpi.py; measured numbers in docs/commands/train.md).
TRAIN = {"descriptors.n_neighbors": 12, "model.hidden_layers": [32, 32],
         "train.points_per_snapshot": 0, "train.validation_fraction": 0.25, "train.epochs": 15,
         "train.batch_size": 128, "train.learning_rate": 3e-3, "train.patience": 10,
         "train.seed": 0}

# Active learning on a tiny real PySCF SiGe binary (tests/test_active*.py, test_learn_compare.py):
# 4-atom cells (2 x 1 x 1 primitive diamond cells, so that the 3 interior candidates of
# resolution 4 are 3 different cells), mesh 0.6 Bohr, 2 rattled snapshots per composition,
# M = 12, a 60-32-32-2 network, 15 epochs, N_s = 10, 500 scoring points per structure.
LEARN = {
    "system.primitive": True,
    "system.supercell": [2, 1, 1],                 # 4 sites: the 3 interior candidates differ
    "compositions.list": ["Si1"],
    "snapshots.per_composition": 2,
    "snapshots.rattle_stdev_angstrom": 0.03,
    "dft.mesh_spacing_bohr": 0.6,
    "dft.scf_tol": 1e-8,
    "descriptors.n_neighbors": 12,
    "model.hidden_layers": [32, 32],
    "model.n_samples": 10,
    "train.points_per_snapshot": 0,
    "train.validation_fraction": 0.25,
    "train.epochs": 15,
    "train.batch_size": 128,
    "train.learning_rate": 3e-3,
    "train.patience": 10,
    "learn.strategy": "bayesian",
    "learn.candidate_resolution": 4,
    "learn.per_round": 1,
    "learn.max_rounds": 2,
    "learn.score_points": 500,
}
PURE = ["Si1_Ge0", "Si0_Ge1"]
INTERIOR = ["Si0.75_Ge0.25", "Si0.5_Ge0.5", "Si0.25_Ge0.75"]


def toml_value(v) -> str:
    """TOML text of one value: bool, str, number, list or inline table."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def to_toml(data: dict) -> str:
    """TOML text of a two-level dict (top-level scalars, then one table per section)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_input_file(path, changes=None) -> Path:
    """Write BASE_INPUT with ``changes`` applied to ``path`` as TOML; returns the path.

    ``changes`` maps "section.key" to a value (the section is added if BASE_INPUT has none), or
    to ``None`` to delete the key."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE_INPUT.items()}
    for dotted, value in (changes or {}).items():
        section, _, key = dotted.partition(".")
        table = data.setdefault(section, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    path = Path(path)
    path.write_text(to_toml(data))
    return path


def label_and_train(d: Path, changes: dict) -> Path:
    """Label TINY with PySCF into ``d/train.h5`` and train ``d/model.pt`` on it (one torch
    thread, no progress bars), from the input file ``d/gen.toml`` = TINY + ``changes``, which is
    returned."""
    import torch
    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.labelling import run_generate
    from hpcdens.training.run import run_train

    gen = write_input_file(d / "gen.toml", {**TINY, **changes, "output.directory": str(d / "r")})
    run_generate(load_config(gen), d / "train.h5", MPI.COMM_SELF, progress=False)
    torch.set_num_threads(1)
    run_train(load_config(gen), [d / "train.h5"], d / "model.pt", progress=False)
    return gen
