"""Thermal snapshots by Langevin MD through ASE, as in Pathrudkar et al. (npj Comput. Mater.
2025), Methods: an ASE calculator (EMT for tests, a universal machine-learned potential for
production), Maxwell-Boltzmann start, NVT Langevin dynamics, a snapshot every few steps.

The paper ran M3GNet (MatGL), which downloads its weights at run time; hpcdens uses SevenNet-0 or
CHGNet 0.3.0 instead, whose weights ship inside their wheels (the ``mlip`` extra; the choice is
measured in docs/mlip-choice.md). Nothing here touches the network.

ASE units at this edge: Angstrom, fs, K. All randomness comes from an explicit
:class:`numpy.random.Generator` (initial momenta and every Langevin noise term), so a seeded run
repeats bit for bit; ASE's MPI-aware default communicator is replaced by ``DummyMPI``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real
from typing import Callable

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.data import atomic_numbers, chemical_symbols
from ase.md.langevin import Langevin
from ase.parallel import DummyMPI

from .errors import StructureError
from .structures import _int_at_least

MLIP_INSTALL = "HPCDENS_EXTRAS=mlip bash launch/install.sh"
"""The one command that installs the ``mlip`` extra (sevenn and chgnet) into hpcdens's venv."""

SEVENNET_MODEL = "7net-0"
"""SevenNet-0 (11 Jul 2024; PBE, trained on MPtrj), whose checkpoint ships in the sevenn wheel.
Only '7net-0', '7net-0_22May2024', '7net-l3i5' and '7net-mf-0' are in the wheel; sevenn downloads
the others ('7net-omat', '7net-mf-ompa', '7net-omni*') at run time, so they are not offered."""

CHGNET_MODEL = "0.3.0"
"""CHGNet 0.3.0 (PBE, trained on MPtrj), whose weights ship in the chgnet wheel."""

MPTRJ_NUMBERS = frozenset(range(1, 84)) | frozenset(range(89, 95))
"""Atomic numbers in MPtrj, the training set of CHGNet 0.3.0: H-Bi and Ac-Pu. CHGNet's embedding
has rows for Z 1-94, but Po-Ra (84-88) never occur in its training data."""

_RATTLE = "the snapshot method \"rattle\""


@dataclass(frozen=True)
class _Potential:
    label: str                    # what the model is, for messages
    package: str | None           # pip package of the mlip extra; None: part of ASE
    load: Callable[[], tuple]     # () -> (ASE calculator, frozenset of covered atomic numbers)
    fix: str                      # what to use instead for elements it does not cover


def _emt():
    from ase.calculators.emt import EMT, parameters
    return EMT(), frozenset(atomic_numbers[s] for s in parameters)


def _sevenn():
    from sevenn.calculator import SevenNetCalculator
    with warnings.catch_warnings():  # harmless on CPU: sevenn's optional CUDA kernels are absent
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        calc = SevenNetCalculator(model=SEVENNET_MODEL, device="cpu")
    return calc, frozenset(int(z) for z in calc.type_map)


_CHGNET_NOISE = ("Only FixAtoms and FixCartesian is supported by Pymatgen",  # our FixCom: ASE's job
                 "Converting a tensor with requires_grad=True to a scalar")  # inside chgnet


def _chgnet():
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    class QuietCHGNetCalculator(CHGNetCalculator):
        """CHGNet without the two harmless warnings it raises on every MD run."""

        def calculate(self, *args, **kwargs):
            with warnings.catch_warnings():
                for message in _CHGNET_NOISE:
                    warnings.filterwarnings("ignore", message=message)
                super().calculate(*args, **kwargs)

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its size and "will run on cpu"
        model = CHGNet.load(model_name=CHGNET_MODEL, use_device="cpu", verbose=False)
        calc = QuietCHGNetCalculator(model=model, use_device="cpu")
    return calc, MPTRJ_NUMBERS


_POTENTIALS = {
    "emt": _Potential("ASE's EMT", None, _emt, f"use the calculator \"sevenn\" or {_RATTLE}"),
    "sevenn": _Potential("SevenNet-0", "sevenn", _sevenn, f"use {_RATTLE}"),
    "chgnet": _Potential(f"CHGNet {CHGNET_MODEL}", "chgnet", _chgnet, f"use {_RATTLE}"),
}
CALCULATOR_NAMES = tuple(_POTENTIALS)
"""Names :func:`make_calculator` accepts."""


@lru_cache(maxsize=None)
def _loaded(name: str) -> tuple:
    """The calculator ``name`` and its atomic numbers, loaded once per process (a model load takes
    5-15 s; one calculator serves any number of structures, one after another)."""
    try:
        return _POTENTIALS[name].load()
    except OSError as err:  # a checkpoint missing from the installed package
        raise StructureError(f"the calculator \"{name}\" could not load its model ({err}); "
                             f"reinstall the mlip extra with `{MLIP_INSTALL}`") from err


def _element_ranges(numbers) -> str:
    """``{1, ..., 83, 89, ..., 94}`` -> "H-Bi, Ac-Pu": runs of four or more as first-last."""
    runs: list[list[int]] = []
    for z in sorted(numbers):
        if runs and z == runs[-1][-1] + 1:
            runs[-1].append(z)
        else:
            runs.append([z])
    parts = ([f"{chemical_symbols[r[0]]}-{chemical_symbols[r[-1]]}"] if len(r) >= 4
             else [chemical_symbols[z] for z in r] for r in runs)
    return ", ".join(p for part in parts for p in part)


def make_calculator(name: str, symbols=()):
    """An ASE calculator for :func:`md_snapshots`, checked up front against ``symbols``.

    ``"emt"``: ASE's EMT (Al Cu Ag Au Ni Pd Pt H C N O only; fast, for tests). ``"sevenn"``:
    SevenNet-0 and ``"chgnet"``: CHGNet 0.3.0, universal potentials (H-Bi, Ac-Pu) from the ``mlip``
    extra, imported lazily, run on the CPU, loaded once per process. Raises
    :class:`~hpcdens.errors.StructureError` for an unknown name, a package that is not installed
    (naming the install command) or an element the model does not cover.
    """
    if name not in _POTENTIALS:
        raise StructureError(f"unknown calculator {name!r}; allowed: "
                             f"{', '.join(CALCULATOR_NAMES)} (or {_RATTLE} without a calculator)")
    potential = _POTENTIALS[name]
    if potential.package is not None:
        try:
            importlib.import_module(potential.package)
        except ImportError as err:
            raise StructureError(f"the calculator \"{name}\" needs the package "
                                 f"{potential.package}, which is not installed; install the mlip "
                                 f"extra with `{MLIP_INSTALL}` or use {_RATTLE}") from err
    calculator, covered = _loaded(name)
    missing = sorted({s for s in symbols if atomic_numbers.get(s) not in covered})
    if missing:
        raise StructureError(f"the calculator \"{name}\" ({potential.label}) cannot do "
                             f"{', '.join(missing)} (it covers {_element_ranges(covered)}); "
                             f"{potential.fix}")
    return calculator


def _check_md_args(n_snapshots, temperature_K, timestep_fs, steps_between, equilibration_steps):
    _int_at_least(n_snapshots, "n_snapshots")
    _int_at_least(steps_between, "steps_between")
    _int_at_least(equilibration_steps, "equilibration_steps", 0)
    if not isinstance(temperature_K, Real) or not temperature_K >= 0:
        raise StructureError(f"temperature_K must be >= 0 K, got {temperature_K!r}")
    if not isinstance(timestep_fs, Real) or not timestep_fs > 0:
        raise StructureError(f"timestep_fs must be > 0 fs, got {timestep_fs!r}")


def _thermalize(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` with zero total momentum (in place)."""
    masses = atoms.get_masses()[:, None]
    momenta = rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * temperature_K)
    atoms.set_momenta(momenta - masses * momenta.sum(axis=0) / masses.sum())


def md_snapshots(atoms: Atoms, calculator, n_snapshots: int, temperature_K: float, *,
                 rng: np.random.Generator, timestep_fs: float = 2.0, steps_between: int = 10,
                 equilibration_steps: int = 20, friction_per_fs: float = 0.01) -> list[Atoms]:
    """Snapshots of a Langevin (NVT) MD trajectory, as in the paper's MLIP sampling.

    Momenta start Maxwell-Boltzmann at ``temperature_K``, the centre of mass is held fixed
    (:class:`ase.constraints.FixCom`); after ``equilibration_steps`` steps a snapshot is taken
    every ``steps_between`` steps.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (not modified).
    calculator : ase.calculators.calculator.Calculator
        Any ASE calculator, e.g. from :func:`make_calculator`.
    temperature_K : float, K
        Thermostat and initial-velocity temperature.
    rng : numpy.random.Generator
        Draws the initial momenta and every Langevin noise term.
    timestep_fs : float, fs; friction_per_fs : float, 1/fs

    Returns
    -------
    list of ase.Atoms
        ``n_snapshots`` copies, wrapped, without calculator or constraints, with
        ``info["md_step"]`` and ``info["md_temperature_K"]``.
    """
    _check_md_args(n_snapshots, temperature_K, timestep_fs, steps_between, equilibration_steps)
    work = atoms.copy()
    work.set_constraint(FixCom())
    work.calc = calculator
    _thermalize(work, float(temperature_K), rng)
    # comm=DummyMPI(): under mpirun ASE would otherwise broadcast every noise term over COMM_WORLD.
    dyn = Langevin(work, timestep_fs * units.fs, temperature_K=float(temperature_K),
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng, comm=DummyMPI())
    try:
        dyn.run(equilibration_steps)
        snapshots = []
        for _ in range(n_snapshots):
            dyn.run(steps_between)
            snapshots.append(_snapshot(work, dyn.nsteps, temperature_K))
    except NotImplementedError as err:  # how ASE calculators refuse an element, e.g. EMT
        raise StructureError(f"the MD calculator cannot handle this structure ({err}); use the "
                             f"calculator \"sevenn\" or {_RATTLE}") from err
    return snapshots


def _snapshot(atoms: Atoms, step: int, temperature_K: float) -> Atoms:
    snap = atoms.copy()
    snap.set_constraint()
    snap.wrap()
    snap.info.update(md_step=int(step), md_temperature_K=float(temperature_K))
    return snap
