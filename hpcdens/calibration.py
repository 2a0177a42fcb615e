"""``hpcdens calibrate``: fit a model's uncertainty calibration on its validation snapshots.

The posterior of a trained Bayesian network need not be calibrated: its standard deviations can
be too narrow or too wide. ``calibrate`` predicts the model's own validation snapshots (recorded
by ``hpcdens train``, never a test set), compares with their DFT labels and fits three numbers,
stored in the model file (``ModelRecord.calibration``) and applied by predict, evaluate and
learn-compare from then on:

* ``density_scale`` s: the epistemic and aleatoric std of every grid point are multiplied by s,
  chosen so that 68.3 % of the validation grid points have |rho_DFT - rho_ML| <= s sigma_total
  (the 68.3 % quantile of |error| / sigma_total, pooled over the snapshots, on the renormalised
  density). The 2-sigma coverage after scaling is reported as a check of the Gaussian shape.
* ``energy_scale`` s_E: sigma_E (the spread of the sample densities' Harris-Foulkes energies) is
  multiplied by s_E = sqrt(mean(z^2)) with z = (E_ML - E_DFT) / sigma_E over the validation
  snapshots. With few snapshots it is a rough estimate: ``n_energy_snapshots`` says how rough.
* the out-of-reach rule: ``epistemic_threshold`` is the 99.9 % quantile of the raw epistemic std
  over the validation grid points; a predicted point above it is flagged (field
  ``out_of_reach``), and a structure is out of reach when its flagged fraction exceeds
  ``warn_fraction`` = max(1 %, 3 x the largest fraction of any validation snapshot).

Units: e/Bohr^3 (densities, std), Ha/atom (energies).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from . import energy as en
from . import uncertainty as unc
from .dft import settings_from_record
from .errors import InputError
from .io.training_set import recorded_items

log = logging.getLogger("hpcdens.calibrate")

METHOD = ("density: 68.3% quantile of |error|/sigma_total on the validation grid points; "
          "energy: sqrt(mean z^2) of the validation energies; reach: 99.9% quantile of the raw "
          "epistemic std, warn above max(1%, 3x the largest validation fraction)")
THRESHOLD_QUANTILE = 0.999
WARN_FLOOR, WARN_FACTOR = 0.01, 3.0


def validation_items(record, data=None) -> list[tuple[str, str]]:
    """(file, key) of each validation snapshot of the model ``record``; ``data`` replaces the
    recorded training files (same order). InputError naming the fix when there are none or a
    file is missing."""
    return recorded_items(record, data, ("validation_snapshots",),
                          "the model records no validation snapshots, so there is nothing to "
                          "calibrate on. Fix: train it with train.validation_fraction > 0")


def snapshot_statistics(snap, fields, settings, n_samples: int) -> dict:
    """What one validation snapshot contributes (on the rank that holds it): |error|/sigma_total
    and the raw epistemic std at every point (float32), the energy error and sigma_E per atom."""
    n_e = float(snap.attrs["n_electrons"])
    rho, factor = en.renormalise(fields["rho"], snap.grid, n_e)
    sigma = factor * np.hypot(fields["epistemic_std"], fields["aleatoric_std"])
    abs_z = np.abs(snap.rho - rho) / np.maximum(sigma, np.finfo(float).tiny)
    out = {"key": snap.key, "abs_z": abs_z.astype(np.float32).ravel(),
           "epistemic": fields["epistemic_std"].astype(np.float32).ravel()}
    if n_samples:
        energy = en.energy_per_atom(snap.atoms, snap.grid, settings, n_e)
        out.update(error_per_atom=energy(fields["rho"])
                   - snap.attrs["free_energy_ha"] / len(snap.atoms),
                   sigma_per_atom=unc.energy_spread(fields["samples"], energy)[
                       "sigma_per_atom_ha"])
    return out


def fit(stats: list[dict]) -> dict:
    """The calibration (JSON-serialisable) from the :func:`snapshot_statistics` of the
    validation snapshots."""
    abs_z = np.concatenate([s["abs_z"] for s in stats]).astype(float)
    epi = np.concatenate([s["epistemic"] for s in stats]).astype(float)
    scale = float(np.quantile(abs_z, unc.GAUSSIAN_COVERAGE[1]))
    threshold = float(np.quantile(epi, THRESHOLD_QUANTILE))
    fractions = [float(np.mean(s["epistemic"] > threshold)) for s in stats]
    cal = {"method": METHOD, "fitted_on": [s["key"] for s in stats], "n_points": int(abs_z.size),
           "density_scale": scale,
           "raw_coverage": {"1sigma": float(np.mean(abs_z <= 1)),
                            "2sigma": float(np.mean(abs_z <= 2))},
           "calibrated_coverage_2sigma": float(np.mean(abs_z <= 2 * scale)),
           "epistemic_threshold": threshold, "threshold_quantile": THRESHOLD_QUANTILE,
           "validation_flagged_fractions": fractions,
           "warn_fraction": max(WARN_FLOOR, WARN_FACTOR * max(fractions))}
    energies = [s for s in stats if "sigma_per_atom" in s and s["sigma_per_atom"] > 0]
    if energies:
        z = np.array([s["error_per_atom"] / s["sigma_per_atom"] for s in energies])
        cal.update(energy_scale=float(np.sqrt(np.mean(z ** 2))),
                   n_energy_snapshots=len(energies), raw_energy_z=z.tolist(),
                   raw_energy_coverage_2sigma=float(np.mean(np.abs(z) <= 2)))
    return cal


def describe(cal: dict | None, fraction: float | None = None) -> str:
    """One line on a model's calibration and, given the flagged ``fraction`` of a prediction,
    whether the structure is within reach (a WARNING line when it is not)."""
    if not cal:
        return ("uncertainty: uncalibrated (raw posterior std; 'hpcdens calibrate MODEL' fits a "
                "calibration on the validation snapshots)")
    energy = (f", energy error bars x {cal['energy_scale']:.2f} ({cal['n_energy_snapshots']} "
              "snapshots)" if "energy_scale" in cal else "")
    text = (f"uncertainty: calibrated on {len(cal['fitted_on'])} validation snapshots (density "
            f"std x {cal['density_scale']:.2f}{energy})")
    if fraction is None or fraction < 0:
        return text
    text += (f"; out of reach: {fraction:.2%} of the grid points (raw epistemic std above "
             f"{cal['epistemic_threshold']:.2e} e/Bohr^3, field out_of_reach)")
    if fraction > cal["warn_fraction"]:
        text += (f"\nWARNING: this structure is out of the model's reach ({fraction:.2%} of the "
                 f"points flagged, more than {cal['warn_fraction']:.2%}): its errors may exceed "
                 "the error bars. Label it (or one like it) with DFT and retrain")
    return text


def run_calibrate(comm, model, out=None, *, data=None, energy_samples: int | None = None,
                  settings=None) -> dict:
    """Fit the calibration of ``model`` on its validation snapshots (all ranks of ``comm``) and
    write the model with it to ``out`` (default: ``model`` itself, replaced atomically).
    ``energy_samples``: weight samples for the energy scale (None: all N_s; 0: no energy scale).
    Returns the calibration on every rank."""
    from .io.model import load_model, save_model
    from .parallel.collective import on_root
    from .parallel.predict import load_predictor
    from .parallel.snapshots import judge_snapshots

    t0 = time.perf_counter()
    if energy_samples is not None and (energy_samples < 0 or energy_samples == 1):
        raise InputError(f"--energy-samples must be 0 or >= 2, got {energy_samples}")
    predictor = load_predictor(comm, model)
    items = on_root(comm, validation_items, predictor.record, data)
    raw = replace(predictor, record=replace(predictor.record, calibration=None))
    n_samples = raw.record.n_samples if energy_samples is None else energy_samples
    n_samples = min(n_samples, raw.record.n_samples)
    settings = settings or settings_from_record(raw.record.dft)

    def work(snap, fields, predict_s):
        stats = snapshot_statistics(snap, fields, settings, n_samples)
        log.info("calibrate: %s (%.1f s)", snap.key, predict_s)
        return stats

    stats = judge_snapshots(comm, raw, items, work, n_samples=n_samples)
    cal = fit(stats)
    cal["wall_time_s"] = time.perf_counter() - t0

    def write():
        net, record = load_model(model)
        save_model(out or model, net, replace(record, calibration=cal))

    on_root(comm, write)
    return cal
