"""Thermal snapshots by Langevin MD through ASE, as in Pathrudkar et al. (npj Comput. Mater.
2025), Methods: an ASE calculator (EMT for tests, a universal machine-learned potential for
production), Maxwell-Boltzmann start, NVT Langevin dynamics, a snapshot every few steps.

ASE units at this edge: Angstrom, fs, K. All randomness comes from an explicit
:class:`numpy.random.Generator` (initial momenta and every Langevin noise term), so a seeded run
repeats bit for bit; ASE's MPI-aware default communicator is replaced by ``DummyMPI``.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.parallel import DummyMPI

from .errors import StructureError
from .structures import _int_at_least

M3GNET_MODEL = "M3GNet-MP-2021.2.8-PES"
"""The matgl universal potential used for ``make_calculator("m3gnet")``."""


def _emt_calculator(symbols):
    from ase.calculators.emt import EMT, parameters
    unsupported = sorted(set(symbols) - set(parameters))
    if unsupported:
        raise StructureError(f"EMT cannot do {', '.join(unsupported)} (it knows only "
                             f"{', '.join(sorted(parameters))}); use the calculator \"m3gnet\" "
                             f"or the snapshot method \"rattle\"")
    return EMT()


def _m3gnet_calculator(symbols):
    try:
        import matgl
        from matgl.ext.ase import PESCalculator
    except ImportError as err:
        raise StructureError("the calculator \"m3gnet\" needs matgl, which is not installed; "
                             "run `pip install matgl` or use the snapshot method \"rattle\""
                             ) from err
    try:
        potential = matgl.load_model(M3GNET_MODEL)
    except (OSError, RuntimeError, ValueError) as err:
        raise StructureError(f"matgl could not load {M3GNET_MODEL} ({err}); matgl downloads it "
                             f"into ~/.cache/matgl on first use, so run once with network access "
                             f"or copy the model there") from err
    return PESCalculator(potential=potential)


_CALCULATORS = {"emt": _emt_calculator, "m3gnet": _m3gnet_calculator}
CALCULATOR_NAMES = tuple(_CALCULATORS)
"""Names :func:`make_calculator` accepts."""


def make_calculator(name: str, symbols=()):
    """An ASE calculator for :func:`md_snapshots`, checked up front against ``symbols``.

    ``"emt"``: ASE's EMT (Al Cu Ag Au Ni Pd Pt H C N O only; fast, for tests). ``"m3gnet"``:
    matgl's universal M3GNet potential as in the paper (imported lazily).
    """
    if name not in _CALCULATORS:
        raise StructureError(f"unknown calculator {name!r}; allowed: "
                             f"{', '.join(CALCULATOR_NAMES)} (or the snapshot method \"rattle\" "
                             f"without a calculator)")
    return _CALCULATORS[name](list(symbols))


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
    """Snapshots of a Langevin (NVT) MD trajectory, as in the paper's M3GNet sampling.

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
                             f"calculator \"m3gnet\" or the snapshot method \"rattle\"") from err
    return snapshots


def _snapshot(atoms: Atoms, step: int, temperature_K: float) -> Atoms:
    snap = atoms.copy()
    snap.set_constraint()
    snap.wrap()
    snap.info.update(md_step=int(step), md_temperature_K=float(temperature_K))
    return snap
