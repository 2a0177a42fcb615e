"""``hpcdens energy``: the Harris-Foulkes energy of a predicted density, errors against a DFT label."""

from __future__ import annotations

import json
from dataclasses import replace

from ..constants import CHEMICAL_ACCURACY_HA_PER_ATOM, DEFAULT_FIELD
from ..errors import InputError


def format_report(s: dict) -> str:
    """Human-readable lines of a :func:`run_energy` summary."""
    field = s["field"] + (", charge-corrected" if s.get("charge_corrected") else "")
    lines = [f"{s['prediction']} [{field}]: {s['formula']}, {s['n_atoms']} atoms, grid "
             f"{'x'.join(map(str, s['grid_shape']))}, N_e = {s['n_electrons']:g}",
             f"integral of rho = {s['integral_e']:.8g} e"
             + (f", renormalised by {s['renormalisation_factor']:.8f} (Eq. 9)"
                if s["renormalised"] else " (not renormalised)"),
             f"E_HF = {s['free_energy_per_atom_ha']:.8f} Ha/atom ({s['free_energy_ha']:.8f} Ha; "
             f"free energy E - TS, -TS = {s['entropy_term_ha']:.3e} Ha) [{s['backend']}]",
             f"Harris-Foulkes time {s['wall_time_s']:.2f} s"]
    bar = s.get("error_bar")
    lines.append("error bar: none (predict with --save-samples to get one)" if bar is None else
                 f"error bar: sigma_E = {bar['sigma_per_atom_ha']:.2e} Ha/atom from "
                 f"{bar['n_samples']} sample densities ("
                 + (f"calibrated, x {bar['energy_scale']:.2f}" if bar["calibrated"]
                    else "uncalibrated: 'hpcdens calibrate MODEL' fits its scale") + ")")
    if "reference" in s:
        r, e = s["reference"], s["reference"]["free_energy"]
        verdict = "within" if e["chemically_accurate"] else "NOT within"
        lines.append(f"reference {r['key']}: E_DFT = {r['reference_free_energy_per_atom_ha']:.8f} "
                     f"Ha/atom; error {e['error_ha_per_atom']:.3e} Ha/atom, "
                     f"{e['error_ha_per_electron']:.3e} Ha/electron ({verdict} chemical accuracy "
                     f"{CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom)")
        if "density" in r:
            lines.append(f"density: NRMSE {r['density']['nrmse']:.3e}, relative L1 "
                         f"{r['density']['relative_l1_percent']:.3f} %")
    if "scf_from_prediction" in s:
        c = s["scf_from_prediction"]
        lines.append(f"SCF from the prediction: {c['iterations_from_prediction']} iterations "
                     f"({c['wall_time_from_prediction_s']:.1f} s) vs {c['iterations_default']} "
                     f"from the default start ({c['wall_time_default_s']:.1f} s): "
                     f"{c['iterations_saved']} saved" + ("" if c["converged"] else
                                                         f" - NOT CONVERGED: {c['message']}"))
    return "\n".join(lines)


def _settings(args):
    """The DFT settings (a :class:`hpcdens.config.DFTConfig`) of CONFIG's [dft] section, else the
    defaults, with --backend applied."""
    from ..config import DFTConfig, load_config

    if args.config:
        settings = load_config(args.config).dft
    else:
        settings = DFTConfig()
    return replace(settings, backend=args.backend) if args.backend else settings


def run(args) -> int:
    """``hpcdens energy`` (argparse namespace -> exit code)."""
    from ..energy import run_energy
    from ..io.files import output_file

    if args.key and not args.reference:
        raise InputError("--key needs --reference TRAINSET (the training set holding the key)")
    out = output_file(args.json, args.overwrite, "JSON file") if args.json else None
    summary = run_energy(args.prediction, _settings(args), args.reference, args.key, args.field,
                         not args.no_renormalise, args.scf_from_prediction)
    print(format_report(summary), flush=True)
    if out is not None:
        out.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return 0


def register(sub):
    """Add the ``energy`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "energy", help="Harris-Foulkes energy of a predicted density",
        description="Renormalise the density of a finished 'hpcdens predict' file to the N_e "
        "valence electrons of the backend's pseudopotentials (Eq. 9) and compute its "
        "Harris-Foulkes energy E_HF (Eq. 10, the free energy E - TS) with the DFT settings of "
        "CONFIG's [dft] section (default settings without --config). With --reference and --key, "
        "also the energy error per atom and per electron against that DFT snapshot (chemical "
        "accuracy: 1.6e-3 Ha/atom) and the density NRMSE and relative L1 error. Serial: run it "
        "without mpirun. See docs/commands/energy.md.")
    p.add_argument("prediction", help="HDF5 file written by 'hpcdens predict'")
    p.add_argument("--backend", choices=["pyscf", "sparc"],
                   help="DFT code (default: CONFIG's dft.backend, else pyscf)")
    p.add_argument("--config", help="input file (TOML) whose [dft] section gives the settings; "
                   "use the one that generated the training data")
    p.add_argument("--reference", metavar="TRAINSET", help="training set (from 'hpcdens "
                   "generate') holding a DFT label of the same structure on the same grid")
    p.add_argument("--key", help="snapshot key in TRAINSET (optional if it holds one snapshot)")
    p.add_argument("--field", default=DEFAULT_FIELD, help="density dataset of the prediction file "
                   "(default rho_normalised: Eq. 9, and the atomic-charge correction where the "
                   "model has a charge model; rho, the raw prediction, or rho_sad also work)")
    p.add_argument("--no-renormalise", action="store_true", help="use the density as stored, "
                   "without scaling it to N_e (Eq. 9); for diagnostics only")
    p.add_argument("--scf-from-prediction", action="store_true", help="also run an "
                   "SCF started from the predicted density and one from the default start on the "
                   "same cell, and report the SCF iterations saved")
    p.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    p.set_defaults(func=run)
    return p
