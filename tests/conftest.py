"""Shared test fixtures: an input file in the test's directory, one torch thread."""

import pytest

from tests.input_helpers import write_input_file


@pytest.fixture
def write_input(tmp_path):
    """write_input(changes, name) -> path of ``name`` in this test's tmp_path, holding BASE_INPUT
    with ``changes`` applied (tests.input_helpers.write_input_file)."""

    def write(changes=None, name="input.toml"):
        return write_input_file(tmp_path / name, changes)

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
