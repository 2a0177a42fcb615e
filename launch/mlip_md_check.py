"""Short Langevin MD smoke test of a universal MLIP through ASE.

usage: python launch/mlip_md_check.py MODEL [nsteps]   (in a venv with the MLIP package installed; docs/mlip-choice.md)
MODEL: sevenn-0 | sevenn-l3i5 | sevenn-mf0 | chgnet | diep
"""
import json
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)

from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

model = sys.argv[1]
nsteps = int(sys.argv[2]) if len(sys.argv) > 2 else 50


def make_calc():
    t0 = time.perf_counter()
    if model.startswith("sevenn"):
        from sevenn.calculator import SevenNetCalculator
        kw = {}
        name = {"sevenn-0": "7net-0", "sevenn-l3i5": "7net-l3i5", "sevenn-mf0": "7net-mf-0"}[model]
        if model == "sevenn-mf0":
            kw["modal"] = "R2SCAN"
        calc = SevenNetCalculator(model=name, device="cpu", **kw)
        species = None
        try:
            species = sorted(calc.type_map.keys())  # atomic numbers
        except Exception as e:  # noqa
            species = repr(e)
    elif model == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
        m = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=True)
        calc = CHGNetCalculator(model=m, use_device="cpu")
        species = "atom_embedding rows: %d" % m.atom_embedding.embedding.weight.shape[0]
    elif model == "diep":
        from diep.pretrained import make_calculator
        calc = make_calculator(device="cpu")
        species = None
    else:
        raise SystemExit("unknown model")
    return calc, species, time.perf_counter() - t0


def min_dist(atoms):
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def run(atoms, calc, label, T=1000.0, steps=nsteps, seed=1):
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=T, rng=rng)
    Stationary(atoms)
    t0 = time.perf_counter()
    e0 = atoms.get_potential_energy()
    t_first = time.perf_counter() - t0
    dyn = Langevin(atoms, timestep=1.0 * units.fs, temperature_K=T,
                   friction=0.01 / units.fs, rng=np.random.default_rng(seed + 1))
    temps, dmins, epots, stamps = [], [], [], []

    def obs():
        stamps.append(time.perf_counter())
        temps.append(atoms.get_temperature())
        dmins.append(min_dist(atoms))
        epots.append(float(atoms.get_potential_energy()) / len(atoms))
    dyn.attach(obs, interval=1)
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = time.perf_counter() - t0
    f = atoms.get_forces()
    res = dict(label=label, natoms=len(atoms), formula=atoms.get_chemical_formula(),
               first_energy_eV_per_atom=round(float(e0) / len(atoms), 4), first_call_s=round(t_first, 3),
               steps=steps, s_per_step=round(dt / steps, 4),
               median_s_per_step=round(float(np.median(np.diff(stamps))), 4),
               T_final=round(temps[-1], 1), T_mean_last20=round(float(np.mean(temps[-20:])), 1),
               T_max=round(max(temps), 1),
               dmin_initial=round(dmins[0], 3), dmin_min=round(min(dmins), 3),
               epot_first=round(epots[0], 4), epot_last=round(epots[-1], 4),
               fmax_final=round(float(np.abs(f).max()), 3),
               finite=bool(np.isfinite(f).all() and np.isfinite(epots).all()))
    print(json.dumps(res), flush=True)
    return res


def sige(seed=0):
    a = bulk("Si", "diamond", a=5.54, cubic=True).repeat((2, 2, 2))  # 64 atoms
    rng = np.random.default_rng(seed)
    sym = np.array(["Si"] * 32 + ["Ge"] * 32)
    rng.shuffle(sym)
    a.set_chemical_symbols(sym)
    return a


def sigesn(seed=0):
    # 64-atom Si/Ge/Sn diamond (24/24/16), a ~ Vegard-ish
    a = bulk("Si", "diamond", a=5.70, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    sym = np.array(["Si"] * 24 + ["Ge"] * 24 + ["Sn"] * 16)
    rng.shuffle(sym)
    a.set_chemical_symbols(sym)
    return a


def crfeconi(seed=0):
    a = bulk("Ni", "fcc", a=3.57, cubic=True).repeat((2, 2, 2))  # 32 atoms
    rng = np.random.default_rng(seed)
    sym = np.array(["Cr", "Fe", "Co", "Ni"] * 8)
    rng.shuffle(sym)
    a.set_chemical_symbols(sym)
    return a


if __name__ == "__main__":
    print("torch", torch.__version__, "threads", torch.get_num_threads(), flush=True)
    calc, species, tload = make_calc()
    print(json.dumps(dict(model=model, load_s=round(tload, 2), species=species)), flush=True)
    run(sige(), calc, "SiGe64_1000K")
    run(crfeconi(), calc, "CrFeCoNi32_1000K")
    run(sigesn(), calc, "SiGeSn64_1000K", steps=20)
