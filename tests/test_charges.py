"""hpcdens.charges: Hirshfeld populations, the per-atom charge correction (the per-atom Eq. 9)
and the charge model (features invariant to rotation, translation and permutation; kernel ridge
regression that learns a charge law from examples), on cells with synthetic Gaussian pro-atoms."""

import numpy as np
import pytest

from hpcdens import charges
from hpcdens.grid import Grid
from hpcdens.sad import pro_atoms, tabulate

Z_SI, Z_GE = 14, 32


def gaussian(element, width, n_electrons):
    r = np.arange(0.0, 20.0, 0.01)
    return tabulate(element, n_electrons, r,
                    n_electrons * np.exp(-(r / width) ** 2) / (np.pi ** 1.5 * width ** 3))


RADIAL = {"Si": gaussian("Si", 1.4, 4.0), "Ge": gaussian("Ge", 1.7, 4.0)}


def cell_and_atoms(seed=0, n=8, side=9.0):
    rng = np.random.default_rng(seed)
    cell = np.diag([side, side * 1.1, side * 0.9])
    positions = rng.random((n, 3)) @ cell
    symbols = ["Si" if k % 2 else "Ge" for k in range(n)]
    return cell, positions, symbols


def weights_on_grid(cell, positions, symbols, shape=(24, 26, 22)):
    grid = Grid(cell, shape)
    points = grid.cartesian_points()
    pro = pro_atoms(cell, positions, symbols, points, RADIAL)
    return grid, pro, charges.hirshfeld_weights(pro)


def test_populations_of_the_sad_are_the_pro_atoms_and_add_up():
    cell, positions, symbols = cell_and_atoms()
    grid, pro, w = weights_on_grid(cell, positions, symbols)
    dv = grid.voxel_volume_bohr3
    sad = np.asarray(pro.sum(axis=1)).ravel()
    n = charges.populations(w, sad, dv)
    np.testing.assert_allclose(n, np.asarray(pro.sum(axis=0)).ravel() * dv, rtol=1e-12)
    np.testing.assert_allclose(n, 4.0, rtol=2e-3)          # each pro-atom holds its 4 electrons
    rho = sad * (1 + 0.3 * np.sin(grid.cartesian_points()[:, 0]))
    assert charges.populations(w, rho, dv).sum() == pytest.approx(rho.sum() * dv, rel=1e-12)


def test_correction_reaches_the_targets_and_leaves_a_consistent_density_alone():
    cell, positions, symbols = cell_and_atoms(1)
    grid, pro, w = weights_on_grid(cell, positions, symbols)
    dv = grid.voxel_volume_bohr3
    rng = np.random.default_rng(3)
    pts = grid.cartesian_points()
    rho = (np.asarray(pro.sum(axis=1)).ravel() * (1 + 0.2 * np.cos(pts[:, 1]))).reshape(grid.shape)
    now = charges.populations(w, rho, dv)
    target = now + rng.normal(0, 0.05, len(now))
    target += (now.sum() - target.sum()) / len(now)            # same number of electrons
    new, lam = charges.correct(rho, w, dv, target)
    assert new.shape == rho.shape and new.min() >= 0
    np.testing.assert_allclose(charges.populations(w, new, dv), target, atol=1e-9)
    assert new.sum() * dv == pytest.approx(rho.sum() * dv, rel=1e-12)
    # A density renormalised by s (Eq. 9) with targets s N_a: nothing left to correct.
    s = 1.013
    scaled, lam = charges.correct(rho * s, w, dv, now * s)
    np.testing.assert_allclose(lam, 0.0, atol=1e-10)
    np.testing.assert_allclose(scaled, rho * s, rtol=1e-12)
    with pytest.raises(ValueError, match="renormalise the density first"):
        charges.correct(rho, w, dv, now + 0.1)


def test_shells_without_density_are_left_alone():
    """Radial shells of the pro-atoms as columns: a shell holding no electrons (here: the density
    is zero within 0.5 Bohr of every atom) keeps lam = 0 and the others reach their targets."""
    cell, positions, symbols = cell_and_atoms(4)
    grid = Grid(cell, (24, 26, 22))
    pts = grid.cartesian_points()
    pro = pro_atoms(cell, positions, symbols, pts, RADIAL, shells_bohr=(0.5, 1.5))
    w = charges.hirshfeld_weights(pro)
    dv = grid.voxel_volume_bohr3
    d = np.min([np.linalg.norm((pts - p + cell.sum(0) / 2) @ np.linalg.inv(cell) % 1 @ cell
                               - cell.sum(0) / 2, axis=1) for p in positions], axis=0)
    rho = np.asarray(pro.sum(axis=1)).ravel() * (d > 0.5 + 0.3)     # no density near any atom
    now = charges.populations(w, rho, dv)
    dead = now <= charges.LIVE_POPULATION
    assert dead.reshape(-1, 3)[:, 0].all() and not dead.reshape(-1, 3)[:, 1:].any()
    target = np.where(dead, now, now * (1 + np.random.default_rng(5).normal(0, 0.03, len(now))))
    target[~dead] += (now.sum() - target.sum()) / (~dead).sum()
    new, lam = charges.correct(rho, w, dv, target)
    assert np.all(lam[dead] == 0)
    np.testing.assert_allclose(charges.populations(w, new, dv), target, atol=1e-9)


def test_features_are_invariant_and_follow_the_atoms():
    cell, positions, symbols = cell_and_atoms(2)
    numbers = [Z_SI if s == "Si" else Z_GE for s in symbols]
    f = charges.features(positions, numbers, cell, [Z_SI, Z_GE])
    assert f.shape == (8, 2 * (1 + len(charges.CENTRES_BOHR))) and f[:, 2:].sum() > 0
    rot, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    perm = np.random.default_rng(5).permutation(8)
    moved = (positions[perm] + [1.3, -2.0, 0.7]) @ rot.T
    g = charges.features(moved, np.asarray(numbers)[perm], cell @ rot.T, [Z_SI, Z_GE])
    np.testing.assert_allclose(g, f[perm], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[50\] are not among the model's species"):
        charges.features(positions, [50] + numbers[1:], cell, [Z_SI, Z_GE])


def test_the_charge_model_learns_a_charge_law_and_survives_its_record():
    """Charges that follow the neighbours (Si gains from each close Ge): learned from 12 cells,
    predicted on 4 others far better than their spread."""
    def law(f):
        n = len(charges.CENTRES_BOHR)
        si_ge_near = f[:, 0] * f[:, 2 + n:2 + n + 4].sum(1)    # an Si atom's close Ge neighbours
        return -0.05 * si_ge_near + 0.02 * f[:, 1]

    def cells(seeds):
        feats, groups = [], []
        for seed in seeds:
            cell, positions, symbols = cell_and_atoms(seed, n=16, side=11.0)
            numbers = [Z_SI if s == "Si" else Z_GE for s in symbols]
            feats.append(charges.features(positions, numbers, cell, [Z_SI, Z_GE]))
            groups += [seed] * 16
        f = np.vstack(feats)
        return f, law(f), groups

    f, q, groups = cells(range(10, 22))
    model = charges.fit(f, q, groups, [Z_SI, Z_GE])
    ft, qt, _ = cells(range(30, 34))
    err = model.predict(ft) - qt
    assert np.sqrt(np.mean(err ** 2)) < 0.2 * qt.std()
    assert model.alpha in charges.ALPHAS and model.gamma in charges.GAMMAS
    again = charges.ChargeModel.from_record(model.to_record())
    np.testing.assert_allclose(again.predict(ft), model.predict(ft), rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2 snapshots"):
        charges.fit(f[:16], q[:16], groups[:16], [Z_SI, Z_GE])
