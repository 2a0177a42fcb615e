"""Shared test fixtures: small input files written as TOML text."""

import pytest

BASE_INPUT = {
    "name": "t",
    "system": {"elements": ["Si", "Ge"], "lattice": "diamond", "supercell": [1, 1, 1]},
    "compositions": {"list": ["Si0.5Ge0.5", "Si1"]},
    "snapshots": {"per_composition": 2, "method": "rattle", "seed": 3},
    "dft": {"backend": "pyscf", "mesh_spacing_bohr": 0.5},
}


def toml_value(v):
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


@pytest.fixture
def write_input(tmp_path):
    """write_input(changes) -> path of BASE_INPUT with section-level changes applied.

    ``changes`` maps "section.key" to a value, or to ``None`` to delete the key."""

    def write(changes=None, name="input.toml"):
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE_INPUT.items()}
        for dotted, value in (changes or {}).items():
            section, _, key = dotted.partition(".")
            table = data.setdefault(section, {})
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        path = tmp_path / name
        path.write_text(to_toml(data))
        return path

    return write


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test (as under launch/env.sh), restored afterwards: stable and
    fair on a shared machine. Modules use it with ``pytest.mark.usefixtures``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
