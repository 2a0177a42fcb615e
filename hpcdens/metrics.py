"""Error measures of predicted densities and energies (numpy only).

Density errors follow the Suryanarayana/Pathrudkar group's density-ML papers: on a uniform grid
every point has the same voxel volume, so the integrals in their definitions become sums over grid
points (the voxel volume cancels).

    NRMSE = sqrt(mean_i (pred_i - ref_i)^2) / (max_i ref_i - min_i ref_i)
    %L1   = 100 * sum_i |pred_i - ref_i| / sum_i |ref_i|

Energy errors are absolute: |E_pred - E_ref| / N_atoms (Ha/atom) and / N_electrons (Ha/electron).

For a field spread over MPI ranks, each rank computes ``error_sums`` of its block, the caller
reduces them (sum, sum, sum, sum, max, min) and ``errors_from_sums`` gives the global values, which
equal those of the whole field; no rank ever holds the whole grid.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

SUM_KEYS = ("n", "sq_err", "abs_err", "abs_ref")


def _pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred.shape != ref.shape:
        raise InputError(f"prediction and reference must have the same shape, got {pred.shape} "
                         f"and {ref.shape}")
    if pred.size == 0:
        raise InputError("prediction and reference are empty; an error needs at least one point")
    if not (np.isfinite(pred).all() and np.isfinite(ref).all()):
        raise InputError("prediction or reference contains NaN or inf")
    return pred.ravel(), ref.ravel()


def nrmse(pred, ref) -> float:
    """Normalised root-mean-square error of a field.

    pred, ref : arrays of the same shape (any), e.g. (n1, n2, n3) float64, e/Bohr^3.
    Returns sqrt(mean((pred - ref)^2)) / (max(ref) - min(ref)), dimensionless.
    Raises InputError if the shapes differ, the arrays are empty, or ref is constant.
    """
    pred, ref = _pair(pred, ref)
    return _nrmse(np.mean((pred - ref) ** 2), ref.max() - ref.min())


def relative_l1_percent(pred, ref) -> float:
    """Relative L1 error in percent: 100 * sum|pred - ref| / sum|ref| (same shapes, any).
    Raises InputError if the shapes differ, the arrays are empty, or ref is zero everywhere."""
    pred, ref = _pair(pred, ref)
    return _rel_l1(np.abs(pred - ref).sum(), np.abs(ref).sum())


def _nrmse(mean_sq: float, spread: float) -> float:
    if not spread > 0:
        raise InputError("NRMSE is undefined for a constant reference (max(ref) == min(ref))")
    return float(np.sqrt(mean_sq) / spread)


def _rel_l1(abs_err: float, abs_ref: float) -> float:
    if not abs_ref > 0:
        raise InputError("relative L1 error is undefined for a reference that is zero everywhere")
    return float(100.0 * abs_err / abs_ref)


def error_sums(pred, ref) -> dict:
    """Partial sums of one block of a field, to be reduced over blocks (ranks).

    Returns {"n", "sq_err", "abs_err", "abs_ref"} (reduce by sum) and {"ref_max", "ref_min"}
    (reduce by max, min). An empty block gives zeros and ref_max = -inf, ref_min = +inf.
    """
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred.shape != ref.shape:
        raise InputError(f"prediction and reference must have the same shape, got {pred.shape} "
                         f"and {ref.shape}")
    diff = pred - ref
    return {"n": int(ref.size), "sq_err": float(np.sum(diff * diff)),
            "abs_err": float(np.sum(np.abs(diff))), "abs_ref": float(np.sum(np.abs(ref))),
            "ref_max": float(ref.max()) if ref.size else -np.inf,
            "ref_min": float(ref.min()) if ref.size else np.inf}


def combine_sums(parts) -> dict:
    """Serial reduction of several ``error_sums`` (what an MPI allreduce does across ranks)."""
    parts = list(parts)
    out = {k: sum(p[k] for p in parts) for k in SUM_KEYS}
    out["ref_max"] = max(p["ref_max"] for p in parts)
    out["ref_min"] = min(p["ref_min"] for p in parts)
    return out


def errors_from_sums(sums: dict) -> dict:
    """{"nrmse", "relative_l1_percent"} of the whole field from reduced ``error_sums``."""
    if sums["n"] < 1:
        raise InputError("no points in the reduced sums; an error needs at least one point")
    return {"nrmse": _nrmse(sums["sq_err"] / sums["n"], sums["ref_max"] - sums["ref_min"]),
            "relative_l1_percent": _rel_l1(sums["abs_err"], sums["abs_ref"])}


def _per_count(e_pred, e_ref, count, what: str):
    e_pred, e_ref = np.asarray(e_pred, dtype=float), np.asarray(e_ref, dtype=float)
    count = np.asarray(count, dtype=float)
    if e_pred.shape != e_ref.shape:
        raise InputError(f"predicted and reference energies must have the same shape, got "
                         f"{e_pred.shape} and {e_ref.shape}")
    try:
        shape = np.broadcast_shapes(e_pred.shape, count.shape)
    except ValueError as err:
        raise InputError(f"energies of shape {e_pred.shape} and {what} of shape {count.shape} "
                         f"do not match in shape") from err
    if not np.all(count > 0):
        raise InputError(f"{what} must be > 0, got {count.tolist()}")
    err = np.abs(e_pred - e_ref) / count
    return float(err) if shape == () else np.broadcast_to(err, shape).copy()


def energy_error_per_atom(e_pred, e_ref, n_atoms):
    """|E_pred - E_ref| / N_atoms, Ha/atom (energies in Ha). Scalars or arrays of one shape
    (one entry per structure; n_atoms may be a scalar). Returns a float or an array."""
    return _per_count(e_pred, e_ref, n_atoms, "n_atoms")


def energy_error_per_electron(e_pred, e_ref, n_electrons):
    """|E_pred - E_ref| / N_electrons, Ha/electron (valence electrons of the pseudopotentials,
    the N_e of the density's normalisation, Eq. 9). Same conventions as energy_error_per_atom."""
    return _per_count(e_pred, e_ref, n_electrons, "n_electrons")
