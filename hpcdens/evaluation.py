"""``hpcdens evaluate``: a trained model against a DFT test set (paper Eqs. 9-10, per snapshot).

For every snapshot of a test set (a training-set file written by ``hpcdens generate``):

1. predict its density on exactly the snapshot's grid with :func:`hpcdens.parallel.predict.
   predict_atoms` on all ranks of the communicator, from the snapshot's atoms in memory and the
   model loaded once for all snapshots; the prediction file goes to
   ``DIR/predictions/<key>.h5`` (``/`` in a key becomes ``__``), and the fields rho,
   epistemic_std and aleatoric_std (and the densities of the N_s weight samples, in memory only)
   are gathered on rank i % size for snapshot i (the whole grid in one rank's memory: fine for
   test cells of DFT size, see :func:`hpcdens.parallel.predict.gather_fields`);
2. on that rank, while the other ranks work on theirs: renormalise the raw prediction ``rho`` to
   N_e (Eq. 9) and compute its Harris-Foulkes energy (Eq. 10, the free energy E - TS) with
   :func:`hpcdens.energy.energy_of_density` on the snapshot's own atoms and grid, then, with the
   same set-up, the energies of the sample densities: their standard deviation is the energy
   error bar sigma_E (:func:`hpcdens.uncertainty.energy_spread`, ``energy_samples`` of them,
   default all N_s), and one draw of the aleatoric noise gives its effect on the energy;
3. compare with the DFT label: energy error per atom and per electron (signed and absolute,
   against the snapshot's ``free_energy_ha``) and whether it lies within 2 sigma_E, density
   NRMSE and relative L1 of the renormalised density, the mean over the grid of the predicted
   epistemic and aleatoric std, and the fraction of grid points whose DFT density lies within
   +-1 and +-2 sigma (total, epistemic, aleatoric; the total also by density level;
   :func:`hpcdens.uncertainty.point_coverage`);
4. on cells with vacancies or segregation blocks (attributes ``vacancy_sites_angstrom``,
   ``segregation_bins``): the same renormalised density's errors per distance shell around the
   vacancies and at the block faces (:mod:`hpcdens.regions`).

Rank 0 writes ``evaluate.csv``, ``evaluate.json`` (rows + summary), ``parity.png`` and
``error_vs_composition.png`` (and ``regions.csv`` when some cell has regions) and prints a table.
Units: Ha, Bohr, e/Bohr^3.

Composition axis ``x``: the atom fraction of the second element of ``elements`` (CONFIG's
``system.elements`` with --config, else the model's species in increasing atomic number). For a
binary this is the usual x of A(1-x)B(x); with more elements it is the fraction of that one
element only (the other fractions are in the ``composition`` column).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import energy as en
from . import regions as rg
from . import uncertainty as unc
from .charge_correction import correct_density
from .config import DFTConfig
from .dft import settings_from_record, valence_electrons
from .errors import InputError
from .io.files import write_csv, write_json
from .parallel.collective import on_root

log = logging.getLogger("hpcdens.evaluate")

CSV_NAME, JSON_NAME = "evaluate.csv", "evaluate.json"
PARITY_PNG, COMPOSITION_PNG = "parity.png", "error_vs_composition.png"
PREDICTIONS, REGIONS_CSV = "predictions", "regions.csv"
RELIABILITY_PNG = "reliability.png"
COLUMNS = ("key", "composition", "formula", "n_atoms", "n_electrons", "x", "nrmse",
           "relative_l1_percent", "e_ml_per_atom_ha", "e_dft_per_atom_ha",
           "error_ha_per_atom", "abs_error_ha_per_atom", "error_ha_per_electron",
           "abs_error_ha_per_electron", "chemically_accurate", "epistemic_std_mean",
           "aleatoric_std_mean", "predicted_std_nrmse_units", "renormalisation_factor", "predict_s",
           "energy_s", "worst_region_relative_l1_percent", "e_ml_std_per_atom_ha",
           "energy_samples", "e_samples_mean_per_atom_ha", "energy_z", "energy_within_2sigma",
           "aleatoric_energy_shift_per_atom_ha", "coverage_1sigma_total", "coverage_2sigma_total",
           "coverage_1sigma_epistemic", "coverage_2sigma_epistemic", "coverage_1sigma_aleatoric",
           "coverage_2sigma_aleatoric", "coverage_1sigma_total_low", "coverage_2sigma_total_low",
           "coverage_1sigma_total_mid", "coverage_2sigma_total_mid", "coverage_1sigma_total_high",
           "coverage_2sigma_total_high", "e_ml_std_raw_per_atom_ha", "out_of_reach_fraction",
           "out_of_reach", "aleatoric_capped_fraction", "aleatoric_std_median",
           "charge_correction_rmse")
ENERGY_COLUMNS = ("e_ml_per_atom_ha", "e_dft_per_atom_ha", "error_ha_per_atom",
                  "abs_error_ha_per_atom", "error_ha_per_electron", "abs_error_ha_per_electron",
                  "chemically_accurate", "e_ml_std_per_atom_ha", "energy_samples",
                  "e_samples_mean_per_atom_ha", "energy_z", "energy_within_2sigma",
                  "aleatoric_energy_shift_per_atom_ha", "e_ml_std_raw_per_atom_ha",
                  "aleatoric_capped_fraction")


# ----------------------------------------------------------------------------- helpers
def _safe(key: str) -> str:
    return key.replace("/", "__")


def composition_x(atoms, elements: list[str]) -> float:
    """Atom fraction of ``elements[1]`` in ``atoms`` (1.0 for a one-element list)."""
    symbols = atoms.get_chemical_symbols()
    if len(elements) < 2:
        return 1.0
    return symbols.count(elements[1]) / len(symbols)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} exists and is not a directory. Fix: choose "
                         "another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output directory {str(out)!r} is not empty. Fix: pass --overwrite to "
                         "replace its results, or choose another --out")
    if not out.parent.is_dir():
        raise InputError(f"the parent of the output directory {str(out)!r} does not exist. Fix: "
                         f"mkdir -p {out.parent}, or choose another --out")


def prepare(model, testset, out, settings: DFTConfig | None, elements, overwrite: bool,
            with_energy: bool) -> dict:
    """Rank 0: every check before any work. Returns the plan (picklable), with the model loaded
    for prediction (``predictor``)."""
    from .io.model import read_predictor
    from .io.training_set import read_training_set

    model, testset, out = Path(model), Path(testset), Path(out)
    if not model.is_file():
        raise InputError(f"model {str(model)!r} does not exist. Fix: train one with 'hpcdens "
                         "train' or check the path")
    if not testset.is_file():
        raise InputError(f"test set {str(testset)!r} does not exist. Fix: label one with "
                         "'hpcdens generate' or check the path")
    _check_out(out, overwrite)
    snaps = read_training_set(testset)
    if not snaps:
        raise InputError(f"test set {str(testset)!r} holds no snapshots")
    predictor = read_predictor(model)
    if settings is None:
        settings = settings_from_record(predictor.record.dft)
    if elements is None:
        from ase.data import chemical_symbols

        elements = [chemical_symbols[z] for z in predictor.record.species]
    for s in snaps:
        rg.region_spec(s.key, s.attrs)
        if with_energy:
            en.check_same_settings(settings, s, valence_electrons(s.atoms, settings))
    out.mkdir(exist_ok=True)
    (out / PREDICTIONS).mkdir(exist_ok=True)
    for name in (CSV_NAME, JSON_NAME, PARITY_PNG, COMPOSITION_PNG, REGIONS_CSV, RELIABILITY_PNG):
        (out / name).unlink(missing_ok=True)
    return {"model": str(model), "testset": str(testset), "out": str(out), "settings": settings,
            "elements": list(elements), "keys": [s.key for s in snaps],
            "shapes": [tuple(s.grid.shape) for s in snaps], "predictor": predictor}


def evaluate_snapshot(snap, fields: dict, settings: DFTConfig, elements,
                      with_energy: bool, calibration: dict | None = None,
                      charges: dict | None = None) -> dict:
    """One row: errors of the predicted ``fields`` (rho, epistemic_std, aleatoric_std on the
    snapshot's grid, e/Bohr^3, out_of_reach for calibrated models, and ``samples``, a list of
    sample densities, when the energy error bar is wanted) against ``snap``; its region rows
    (regions.csv) under ``"_regions"``. ``calibration``: the model's (its energy_scale
    multiplies sigma_E); ``charges``: its charge model (the renormalised density is corrected
    to it, docs/charges.md, before every error; ``fields["rho_corrected"]`` when the prediction
    file holds it already, with ``fields["charge_correction"]`` its summary)."""
    epi, ale = float(np.mean(fields["epistemic_std"])), float(np.mean(fields["aleatoric_std"]))
    n_e = float(snap.attrs.get("n_electrons") or valence_electrons(snap.atoms, settings))
    rho, factor = en.renormalise(fields["rho"], snap.grid, n_e)
    corrected = {"charge_rmse_change": None, "lambda_max": None}
    if charges and "rho_corrected" in fields:       # corrected on every rank by predict
        rho, corrected = fields["rho_corrected"], fields["charge_correction"]
    elif charges:
        rho, corrected = correct_density(rho, snap.atoms, snap.grid, charges)
    dens = en.density_errors(rho, snap.rho)
    coverage = unc.point_coverage(rho, snap.rho, factor * fields["epistemic_std"],
                                  factor * fields["aleatoric_std"])
    coverage["_reliability"] = coverage.pop("reliability")
    comp = snap.attrs.get("composition", snap.atoms.get_chemical_formula())
    row = {"key": snap.key, "composition": str(comp),
           "formula": snap.atoms.get_chemical_formula(), "n_atoms": len(snap.atoms),
           "n_electrons": n_e, "x": composition_x(snap.atoms, elements), **dens,
           "epistemic_std_mean": epi, "aleatoric_std_mean": ale,
           "aleatoric_std_median": float(np.median(fields["aleatoric_std"])),
           "renormalisation_factor": factor, **coverage,
           "charge_correction_rmse": corrected["charge_rmse_change"],
           "out_of_reach_fraction": (float(np.mean(fields["out_of_reach"]))
                                     if "out_of_reach" in fields else None),
           "_ref_spread": float(snap.rho.max() - snap.rho.min()),
           "_regions": rg.snapshot_regions(snap, rho)}
    row["worst_region_relative_l1_percent"] = rg.worst_relative_l1(row["_regions"])
    row["out_of_reach"] = (None if row["out_of_reach_fraction"] is None
                           else bool(row["out_of_reach_fraction"] > calibration["warn_fraction"]))
    row.update({k: None for k in ENERGY_COLUMNS})
    row["energy_s"] = 0.0
    if with_energy:
        t0 = time.perf_counter()
        energy = en.energy_per_atom(snap.atoms, snap.grid, settings, n_e)
        t1 = time.perf_counter()
        e_ml = energy(rho if charges else fields["rho"])
        one = time.perf_counter() - t1
        natm, e_ref = len(snap.atoms), float(snap.attrs["free_energy_ha"])
        diff = e_ml * natm - e_ref
        row.update(e_ml_per_atom_ha=e_ml, e_dft_per_atom_ha=e_ref / natm,
                   error_ha_per_atom=diff / natm, abs_error_ha_per_atom=abs(diff) / natm,
                   error_ha_per_electron=diff / n_e, abs_error_ha_per_electron=abs(diff) / n_e,
                   chemically_accurate=bool(abs(diff) / natm
                                            <= en.CHEMICAL_ACCURACY_HA_PER_ATOM))
        if fields.get("samples"):
            n = len(fields["samples"])
            log.info("evaluate: %s: %d sample energies for the error bar, about %.0f s (%.1f s "
                     "each; --energy-samples 0: none)", snap.key, n, n * one, one)
            spread = unc.energy_spread(fields["samples"], energy)
            spread.update(unc.aleatoric_shift(energy, fields["rho"], fields["aleatoric_std"],
                                              e_ml, unc.key_seed(snap.key)))
            sigma = spread["sigma_per_atom_ha"] * unc.energy_scale(calibration)
            row.update(e_ml_std_per_atom_ha=sigma, energy_samples=spread["n_samples"],
                       e_ml_std_raw_per_atom_ha=spread["sigma_per_atom_ha"],
                       e_samples_mean_per_atom_ha=spread["sample_mean_per_atom_ha"],
                       energy_z=diff / natm / sigma if sigma > 0 else None,
                       energy_within_2sigma=bool(abs(diff) / natm <= 2 * sigma),
                       aleatoric_energy_shift_per_atom_ha=spread["aleatoric_shift_per_atom_ha"],
                       aleatoric_capped_fraction=spread["aleatoric_capped_fraction"])
        row["energy_s"] = time.perf_counter() - t0
    return row


def summarise(rows: list[dict]) -> dict:
    """Mean/max absolute energy error (Ha/atom, Ha/electron), mean/max NRMSE and L1, count of
    chemically accurate snapshots (energy figures None without energies); the energy error bar's
    coverage (fraction of snapshots with |error| <= 2 sigma_E, None without sample energies) and
    the mean per-point coverages of the density's +-1 and +-2 sigma."""
    def stat(key, fn):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(fn(vals)) if vals else None

    within = [r["energy_within_2sigma"] for r in rows if r.get("energy_within_2sigma") is not None]
    coverage = {f"mean_coverage_{k}sigma_{kind}": stat(f"coverage_{k}sigma_{kind}", np.mean)
                for k in (1, 2) for kind in ("total", "epistemic", "aleatoric")}

    return {"n_snapshots": len(rows),
            "mean_abs_error_ha_per_atom": stat("abs_error_ha_per_atom", np.mean),
            "max_abs_error_ha_per_atom": stat("abs_error_ha_per_atom", np.max),
            "mean_abs_error_ha_per_electron": stat("abs_error_ha_per_electron", np.mean),
            "max_abs_error_ha_per_electron": stat("abs_error_ha_per_electron", np.max),
            "mean_nrmse": stat("nrmse", np.mean), "max_nrmse": stat("nrmse", np.max),
            "mean_relative_l1_percent": stat("relative_l1_percent", np.mean),
            "n_chemically_accurate": (sum(bool(r["chemically_accurate"]) for r in rows)
                                      if rows and rows[0]["chemically_accurate"] is not None
                                      else None),
            "chemical_accuracy_ha_per_atom": en.CHEMICAL_ACCURACY_HA_PER_ATOM,
            "energy_coverage_2sigma": float(np.mean(within)) if within else None,
            "mean_e_ml_std_per_atom_ha": stat("e_ml_std_per_atom_ha", np.mean),
            "max_abs_aleatoric_energy_shift_per_atom_ha": stat(
                "aleatoric_energy_shift_per_atom_ha", lambda v: np.max(np.abs(v))),
            **coverage, "gaussian_coverage": {f"{k}sigma": unc.GAUSSIAN_COVERAGE[k]
                                              for k in (1, 2)}}


# ----------------------------------------------------------------------------- outputs
def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict], summary: dict) -> str:
    head = (f"{'key':<22} {'composition':<14} {'NRMSE':>9} {'L1 %':>7} {'E err Ha/atom':>14} "
            f"{'sigma_E':>9} {'chem.acc.':>9} {'epist. std':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["chemically_accurate"] is None else ("yes" if r["chemically_accurate"]
                                                            else "no")
        lines.append(f"{r['key']:<22} {r['composition']:<14} {r['nrmse']:>9.3e} "
                     f"{r['relative_l1_percent']:>7.3f} {_fmt(r['error_ha_per_atom'], '>14.3e')} "
                     f"{_fmt(r['e_ml_std_per_atom_ha'], '>9.2e')} "
                     f"{acc:>9} {r['epistemic_std_mean']:>10.3e}")
    s = summary
    lines.append(f"{s['n_snapshots']} snapshots: NRMSE mean {s['mean_nrmse']:.3e} max "
                 f"{s['max_nrmse']:.3e}; |E error| Ha/atom mean "
                 f"{_fmt(s['mean_abs_error_ha_per_atom'], '.3e')} max "
                 f"{_fmt(s['max_abs_error_ha_per_atom'], '.3e')}; chemically accurate "
                 f"(<= {en.CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom): "
                 f"{_fmt(s['n_chemically_accurate'], 'd')}/{s['n_snapshots']}")
    if s["energy_coverage_2sigma"] is not None:
        lines.append(f"energy error bar: mean sigma_E {s['mean_e_ml_std_per_atom_ha']:.2e} Ha/atom;"
                     f" |E error| <= 2 sigma_E for {s['energy_coverage_2sigma']:.0%} of the "
                     f"snapshots (95% if calibrated); aleatoric noise moves E by at most "
                     f"{s['max_abs_aleatoric_energy_shift_per_atom_ha']:.1e} Ha/atom")
    lines.append(f"density within +-1/+-2 sigma (total): {s['mean_coverage_1sigma_total']:.1%} / "
                 f"{s['mean_coverage_2sigma_total']:.1%} of the grid points (68.3% / 95.4% if "
                 "calibrated)")
    return "\n".join(lines)


def write_plots(out: Path, rows: list[dict], elements) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have_e = rows[0]["e_ml_per_atom_ha"] is not None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if have_e:
        ref = np.array([r["e_dft_per_atom_ha"] for r in rows])
        ml = np.array([r["e_ml_per_atom_ha"] for r in rows])
        ax.scatter(ref, ml, s=18)
        lo, hi = float(min(ref.min(), ml.min())), float(max(ref.max(), ml.max()))
        pad = 0.05 * (hi - lo) + 1e-3
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
    else:
        ax.text(0.5, 0.5, "energies not computed (--no-energy)", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel("E_DFT (Ha/atom)")
    ax.set_ylabel("E_ML (Harris-Foulkes, Ha/atom)")
    ax.set_title("energy parity")
    fig.tight_layout()
    fig.savefig(out / PARITY_PNG, dpi=120)
    plt.close(fig)

    x = np.array([r["x"] for r in rows])
    label = f"fraction of {elements[1]}" if len(elements) > 1 else "composition"
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(5, 6), sharex=True)
    if have_e:
        a1.scatter(x, [r["abs_error_ha_per_atom"] for r in rows], s=18)
        a1.axhline(en.CHEMICAL_ACCURACY_HA_PER_ATOM, color="r", ls="--", lw=0.8,
                   label="chemical accuracy")
        a1.legend(fontsize=7)
    a1.set_ylabel("|E_ML - E_DFT| (Ha/atom)")
    # Error bars: the mean predicted std (epistemic and aleatoric combined) in NRMSE units.
    spread = np.array([r["predicted_std_nrmse_units"] or 0.0 for r in rows])
    a2.errorbar(x, [r["nrmse"] for r in rows], yerr=spread, fmt="o", ms=4, capsize=3)
    a2.set_ylabel("density NRMSE (bars: predicted std)")
    a2.set_xlabel(label)
    fig.tight_layout()
    fig.savefig(out / COMPOSITION_PNG, dpi=120)
    plt.close(fig)


def write_reliability(path: Path, reliability: dict) -> None:
    """The reliability diagram: observed against nominal coverage of the central intervals of
    the predicted (total) sigma, with the diagonal of a calibrated Gaussian."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    ax.plot(reliability["nominal"], reliability["observed"], "o-", ms=4, label="this model")
    ax.set_xlabel("nominal coverage (Gaussian)")
    ax.set_ylabel("observed fraction of grid points")
    ax.set_title("density reliability")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver
def run_evaluate(comm, model, testset, out, *, settings: DFTConfig | None = None,
                 elements=None, overwrite: bool = False, with_energy: bool = True,
                 energy_samples: int | None = None, charge_correction: bool = True) -> dict:
    """Evaluate ``model`` on every snapshot of ``testset`` on all ranks of ``comm``; writes the
    outputs to directory ``out``. ``settings``: DFT settings of the energies (default: the model
    record's ``dft`` settings). ``elements``: order for the composition axis (default: the
    model's species by atomic number). ``energy_samples``: how many of the model's N_s weight
    samples give the energy error bar (None: all; 0: none). ``charge_correction``: False
    evaluates a model with a charge model without it (Eq. 9 alone). Returns {"rows",
    "summary", "out", ...} on every rank."""
    from .parallel.snapshots import judge_snapshots

    t0 = time.perf_counter()
    if energy_samples is not None and (energy_samples < 0 or energy_samples == 1):
        raise InputError(f"--energy-samples must be 0 (no error bar) or >= 2, got "
                         f"{energy_samples}")
    plan = on_root(comm, prepare, model, testset, out, settings, elements, overwrite, with_energy)
    out = Path(plan["out"])
    n_samples = 0
    if with_energy and energy_samples != 0:
        n_samples = plan["predictor"].record.n_samples
        n_samples = n_samples if energy_samples is None else min(n_samples, energy_samples)

    def work(snap, fields, predict_s):
        record = plan["predictor"].record
        row = evaluate_snapshot(snap, fields, plan["settings"], plan["elements"], with_energy,
                                record.calibration, record.charges if charge_correction else None)
        row["predict_s"] = predict_s
        log.info("evaluate: %s NRMSE %.3e, E error %s +- %s Ha/atom", snap.key, row["nrmse"],
                 _fmt(row["error_ha_per_atom"], ".3e"), _fmt(row["e_ml_std_per_atom_ha"], ".1e"))
        return row

    rows = judge_snapshots(comm, plan["predictor"], [(plan["testset"], k) for k in plan["keys"]],
                           work, n_samples=n_samples, predictions_dir=out / PREDICTIONS,
                           info={"testset": plan["testset"]}, charge_correction=charge_correction)
    regions = [region for r in rows for region in r.pop("_regions")]
    observed = np.mean([r.pop("_reliability") for r in rows], axis=0).tolist()
    reliability = {"nominal": list(unc.NOMINAL), "observed": observed,
                   "sigma": "total (epistemic and aleatoric), calibrated if the model is",
                   "pooled": "mean over the snapshots of each snapshot's fraction of points"}
    for r in rows:
        spread = r.pop("_ref_spread", None)
        r["predicted_std_nrmse_units"] = (math.hypot(r["epistemic_std_mean"],
                                                     r["aleatoric_std_mean"]) / spread
                                          if spread else None)
    summary = summarise(rows)
    result = {"model": plan["model"], "testset": plan["testset"], "out": str(out),
              "n_ranks": comm.size, "elements": plan["elements"],
              "x_axis": (f"atom fraction of {plan['elements'][1]}"
                         if len(plan["elements"]) > 1 else "none"),
              "energy": ("free energy E - TS (Harris-Foulkes, Eq. 10) vs the label's "
                         "free_energy_ha" if with_energy else None),
              "dft": (asdict(plan["settings"]) if with_energy else None),
              "columns": list(COLUMNS),
              "rows": rows, "summary": summary,
              "regions_csv": REGIONS_CSV if regions else None,
              "uncertainty_calibration": plan["predictor"].record.calibration or "uncalibrated",
              "charge_corrected": bool(charge_correction and plan["predictor"].record.charges),
              "reliability": reliability,
              "wall_time_s": time.perf_counter() - t0}

    def write():
        write_csv(out / CSV_NAME, rows, COLUMNS)
        if regions:
            write_csv(out / REGIONS_CSV, regions, rg.REGION_COLUMNS)
        write_json(out / JSON_NAME, result)
        write_plots(out, rows, plan["elements"])
        write_reliability(out / RELIABILITY_PNG, reliability)

    on_root(comm, write)
    return result




