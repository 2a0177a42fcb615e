"""Atomic charges of a density, a model of them, and the per-atom charge correction
(docs/charges.md).

* **Hirshfeld charges** with the backend's neutral pro-atoms (the radial densities of the SAD,
  :mod:`hpcdens.sad`): weight w_a(r) = rho_a(r) / sum_b rho_b(r), population N_a = int w_a rho dV,
  charge q_a = Z_a - N_a (e; positive: the atom gave electrons away; Z_a its valence charge).
* **Charge model**: kernel ridge regression (Gaussian kernel) of q_a on a species-resolved radial
  description of the atom's surroundings (for each element, Gaussians of the distances to its
  atoms within :data:`CUTOFF_BOHR`, with a cosine cutoff; plus the atom's own element), fitted to
  the Hirshfeld charges of DFT densities. Invariant to rotation, translation and permutation.
* **Correction**: rho'(r) = rho(r) (1 + sum_a lam_a w_a(r)) with the lam_a for which every
  N_a[rho'] is the model's Z_a - q_a: the per-atom form of Eq. 9 (all lam_a equal is Eq. 9's
  rescaling). It moves charge between atoms without changing its shape within an atom's region,
  and keeps rho' >= 0 where rho >= 0 while |lam| < 1.

Why: the Harris-Foulkes energy error of the SiGeSn 64-atom predictions is almost all charge moved
between atoms (docs/reproduction.md, "Charge transfer between atoms"). Units: Bohr, e/Bohr^3, e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENTRES_BOHR = tuple(float(c) for c in np.linspace(3.8, 12.3, 19))
"""Centres of the distance Gaussians of :func:`features` (Bohr)."""
WIDTH_BOHR = 0.47
"""Standard deviation of each distance Gaussian (Bohr)."""
CUTOFF_BOHR = 13.2
"""Neighbours further than this do not enter :func:`features` (Bohr); cosine cutoff to 0."""
ALPHAS = (1e-4, 1e-3, 1e-2)
GAMMAS = (1e-3, 3e-3, 1e-2, 3e-2)
"""Ridge strengths and kernel widths (of standardised features) tried by :func:`fit`."""


def features(positions_bohr, numbers, cell_bohr, species) -> np.ndarray:
    """(natm, len(species) * (1 + len(CENTRES_BOHR))) description of each atom's surroundings in
    a periodic cell: its own element (one-hot over ``species``, sorted atomic numbers) and, per
    element of ``species``, sum over that element's atoms j (images included) within
    CUTOFF_BOHR of exp(-(r_ij - c)^2 / (2 WIDTH_BOHR^2)) fc(r_ij) for every centre c, with
    fc(r) = (cos(pi r / CUTOFF_BOHR) + 1) / 2. Positions and cell in Bohr, cell rows = vectors."""
    from ase.neighborlist import primitive_neighbor_list

    numbers = np.asarray(numbers)
    species = [int(z) for z in species]
    unknown = sorted(set(numbers.tolist()) - set(species))
    if unknown:
        raise ValueError(f"atomic numbers {unknown} are not among the model's species {species}")
    i, j, d = primitive_neighbor_list("ijd", (True, True, True), np.asarray(cell_bohr, float),
                                      np.asarray(positions_bohr, float), CUTOFF_BOHR,
                                      self_interaction=False)
    centres = np.asarray(CENTRES_BOHR)
    g = np.exp(-(d[:, None] - centres) ** 2 / (2 * WIDTH_BOHR ** 2))
    g *= 0.5 * (np.cos(np.pi * d / CUTOFF_BOHR) + 1)[:, None]
    radial = np.zeros((len(numbers), len(species), len(centres)))
    for s, z in enumerate(species):
        pick = numbers[j] == z
        np.add.at(radial[:, s], i[pick], g[pick])
    own = (numbers[:, None] == np.asarray(species)[None, :]).astype(float)
    return np.hstack([own, radial.reshape(len(numbers), -1)])


def hirshfeld_weights(pro):
    """Hirshfeld weights w_a(r) (sparse (npts, natm)) from the pro-atom matrix of
    :func:`hpcdens.sad.pro_atoms`: each row divided by its sum (rows without any pro-atom stay
    zero)."""
    from scipy.sparse import diags

    total = np.asarray(pro.sum(axis=1)).ravel()
    inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return diags(inv) @ pro


def populations(weights, rho, voxel_volume_bohr3: float) -> np.ndarray:
    """(natm,) electrons of each atom, N_a = sum_r w_a(r) rho(r) dV (rho flattened as the rows
    of ``weights``, e/Bohr^3; dV in Bohr^3)."""
    return np.asarray(weights.T @ (np.ravel(rho) * voxel_volume_bohr3)).ravel()


def overlap(weights, rho, voxel_volume_bohr3: float):
    """The sparse (natm, natm) matrix A_ab = sum_r w_a(r) w_b(r) rho(r) dV of the correction's
    linear system (rho flattened as the rows of ``weights``, e/Bohr^3): sums over parts of the
    grid add up to the whole grid's."""
    from scipy.sparse import diags

    return weights.T @ diags(np.ravel(rho) * voxel_volume_bohr3) @ weights


LIVE_POPULATION = 1e-6
"""Columns of the weights (an atom, or one radial shell of it) whose population is at most this
(e) are left as they are by :func:`solve_lambda`: a shell without grid points or density."""


def solve_lambda(a, now, target_populations) -> np.ndarray:
    """(ncol,) lam of the per-atom Eq. 9 from the :func:`overlap` matrix ``a`` and the
    populations ``now`` (:func:`populations`) of the whole density: a lam = target - now, over the
    columns holding more than LIVE_POPULATION electrons (lam = 0 on the others, whose target
    must then be their population). The targets must sum to the density's charge (ValueError
    otherwise: a correction cannot change the number of electrons)."""
    from scipy.sparse.linalg import spsolve

    target = np.asarray(target_populations, dtype=float)
    now = np.asarray(now, dtype=float)
    if abs(target.sum() - now.sum()) > 1e-8 * max(1.0, abs(now.sum())):
        raise ValueError(f"target populations sum to {target.sum():.10g} electrons, the density "
                         f"holds {now.sum():.10g}: renormalise the density first (Eq. 9) or "
                         "make the target charges neutral")
    live = now > LIVE_POPULATION
    lam = np.zeros(len(now))
    a = a.tocsc()
    if not live.all():
        a = a[live][:, live]
    lam[live] = np.atleast_1d(spsolve(a, (target - now)[live]))
    return lam


def correct(rho, weights, voxel_volume_bohr3: float, target_populations,
            now=None) -> tuple[np.ndarray, np.ndarray]:
    """(rho', lam): rho' = rho (1 + weights @ lam), shaped as ``rho``, with the lam (one per
    column of ``weights``) that give every column its ``target_populations`` entry (electrons):
    the linear system sum_b [int w_a w_b rho dV] lam_b = target_a - N_a[rho]
    (:func:`solve_lambda`). ``now``: the :func:`populations` of ``rho``, when already known."""
    flat = np.ravel(rho)
    if now is None:
        now = populations(weights, flat, voxel_volume_bohr3)
    lam = solve_lambda(overlap(weights, flat, voxel_volume_bohr3), now, target_populations)
    return (flat * (1.0 + weights @ lam)).reshape(np.shape(rho)), lam


@dataclass(frozen=True)
class ChargeModel:
    """Kernel ridge regression of Hirshfeld charges (e) on :func:`features`.

    species : sorted atomic numbers; mean, scale : (nf,) standardisation of the features;
    x : (n, nf) standardised training features; coef : (n,) dual coefficients; offset : mean
    training charge (e); gamma : kernel exp(-gamma |x - x'|^2); alpha : ridge strength;
    cv_rmse : cross-validated error of the chosen (alpha, gamma) over the training snapshots (e).
    """

    species: tuple
    mean: np.ndarray
    scale: np.ndarray
    x: np.ndarray
    coef: np.ndarray
    offset: float
    gamma: float
    alpha: float
    cv_rmse: float

    def predict(self, feats) -> np.ndarray:
        """(natm,) charges (e) of atoms described by ``feats`` (:func:`features` rows)."""
        z = (np.asarray(feats, float) - self.mean) / self.scale
        return _kernel(z, self.x, self.gamma) @ self.coef + self.offset

    def to_record(self) -> dict:
        """Plain values for a model file's record (numpy arrays kept)."""
        return {"species": list(self.species), "mean": self.mean, "scale": self.scale,
                "x": self.x, "coef": self.coef, "offset": self.offset, "gamma": self.gamma,
                "alpha": self.alpha, "cv_rmse": self.cv_rmse,
                "features": {"centres_bohr": list(CENTRES_BOHR), "width_bohr": WIDTH_BOHR,
                             "cutoff_bohr": CUTOFF_BOHR}}

    @classmethod
    def from_record(cls, rec: dict) -> ChargeModel:
        f = rec["features"]
        if (list(f["centres_bohr"]) != list(CENTRES_BOHR) or f["width_bohr"] != WIDTH_BOHR
                or f["cutoff_bohr"] != CUTOFF_BOHR):
            raise ValueError("the charge model was fitted with other features than this "
                             "hpcdens computes; fit it again")
        arr = {k: np.asarray(rec[k], float) for k in ("mean", "scale", "x", "coef")}
        return cls(species=tuple(int(z) for z in rec["species"]), offset=float(rec["offset"]),
                   gamma=float(rec["gamma"]), alpha=float(rec["alpha"]),
                   cv_rmse=float(rec["cv_rmse"]), **arr)


def _kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-gamma * np.maximum(sq, 0.0))


def _solve(k: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.linalg import solve

    return solve(k + alpha * np.eye(len(k)), y, assume_a="pos")


def fit(feats, charges, groups, species, folds: int = 4) -> ChargeModel:
    """Fit a :class:`ChargeModel` to ``charges`` (e) of atoms with ``feats``; ``groups`` (one
    label per atom, e.g. its snapshot) keeps each group within one cross-validation fold. (alpha,
    gamma) is the pair of ALPHAS x GAMMAS with the lowest ``folds``-fold error (fewer folds when
    there are fewer groups; ValueError with fewer than 2 groups)."""
    x = np.asarray(feats, float)
    y = np.asarray(charges, float)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    offset = float(y.mean())
    labels = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = labels.max() + 1
    if n_groups < 2:
        raise ValueError("the charge model needs atoms of at least 2 snapshots to choose its "
                         "regularisation by cross-validation")
    fold = labels % min(folds, n_groups)
    best = None
    for gamma in GAMMAS:
        k = _kernel(z, z, gamma)
        for alpha in ALPHAS:
            sq = 0.0
            for f in range(fold.max() + 1):
                tr, te = fold != f, fold == f
                c = _solve(k[np.ix_(tr, tr)], y[tr] - offset, alpha)
                sq += float(np.sum((k[np.ix_(te, tr)] @ c + offset - y[te]) ** 2))
            rmse = np.sqrt(sq / len(y))
            if best is None or rmse < best[0]:
                best = (rmse, alpha, gamma)
    rmse, alpha, gamma = best
    coef = _solve(_kernel(z, z, gamma), y - offset, alpha)
    return ChargeModel(species=tuple(int(s) for s in species), mean=mean, scale=scale, x=z,
                       coef=coef, offset=offset, gamma=gamma, alpha=alpha, cv_rmse=float(rmse))
