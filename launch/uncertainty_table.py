"""Uncertainty table of a model's evaluations (docs/uncertainty.md, "Measured"): for each
``hpcdens evaluate`` directory, the energy error bar's coverage raw and with a calibration's
energy scale, the density coverages, and the out-of-reach fraction of every snapshot under the
calibration's threshold (from the prediction files' raw epistemic std).

    python launch/uncertainty_table.py CALIBRATED_MODEL EVAL_DIR [EVAL_DIR ...] [--md OUT.md]

The evaluations must come from the uncalibrated model (raw std); the calibrated model is read for
its calibration only. Prints a markdown table per directory and a summary line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from hpcdens.io.model import load_model


def rows_of(eval_dir: Path, cal: dict) -> list[dict]:
    data = json.loads((eval_dir / "evaluate.json").read_text())
    if data.get("uncertainty_calibration", "uncalibrated") != "uncalibrated":
        raise SystemExit(f"{eval_dir}: evaluated with a calibrated model; give raw evaluations")
    out = []
    for r in data["rows"]:
        pred = eval_dir / "predictions" / (r["key"].replace("/", "__") + ".h5")
        with h5py.File(pred, "r") as f:
            epi = f["epistemic_std"][()]
        sigma = r["e_ml_std_per_atom_ha"]
        err = r["error_ha_per_atom"]
        reach = float(np.mean(epi > cal["epistemic_threshold"]))
        out.append({"key": r["key"], "error": err, "sigma_raw": sigma,
                    "z_raw": err / sigma, "z_cal": err / (sigma * cal["energy_scale"]),
                    "cov1": r["coverage_1sigma_total"], "cov2": r["coverage_2sigma_total"],
                    "reach": reach, "flag": reach > cal["warn_fraction"],
                    "ale_capped": r.get("aleatoric_capped_fraction"),
                    "ale_shift": r.get("aleatoric_energy_shift_per_atom_ha")})
    return out


def table(name: str, rows: list[dict]) -> str:
    lines = [f"### {name}", "",
             ("| snapshot | E error (Ha/atom) | sigma_E raw | z raw | z calibrated | density "
              "within 1 / 2 sigma | out of reach | flagged | aleatoric shift (Ha/atom) |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['key']} | {r['error']:+.2e} | {r['sigma_raw']:.1e} | "
                     f"{r['z_raw']:+.1f} | {r['z_cal']:+.1f} | {r['cov1']:.1%} / {r['cov2']:.1%} "
                     f"| {r['reach']:.2%} | {'yes' if r['flag'] else 'no'} | "
                     f"{r['ale_shift']:+.1e} |")
    return "\n".join(lines)


def summary(name: str, rows: list[dict]) -> str:
    z_raw = np.array([r["z_raw"] for r in rows])
    z_cal = np.array([r["z_cal"] for r in rows])
    return (f"{name}: {len(rows)} snapshots; |E err| <= 2 sigma_E: raw {np.mean(abs(z_raw) <= 2):.0%}"
            f", calibrated {np.mean(abs(z_cal) <= 2):.0%}; RMS z raw {np.sqrt(np.mean(z_raw**2)):.1f}"
            f", calibrated {np.sqrt(np.mean(z_cal**2)):.1f}; density within 1/2 sigma "
            f"{np.mean([r['cov1'] for r in rows]):.1%} / {np.mean([r['cov2'] for r in rows]):.1%}; "
            f"flagged out of reach {sum(r['flag'] for r in rows)}/{len(rows)} (mean fraction "
            f"{np.mean([r['reach'] for r in rows]):.2%})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--md", help="also write the tables to this markdown file")
    args = p.parse_args()
    cal = load_model(args.model)[1].calibration
    if not cal:
        raise SystemExit(f"{args.model} has no calibration: run hpcdens calibrate first")
    parts, lines = [], []
    for d in args.dirs:
        rows = rows_of(Path(d), cal)
        parts.append(table(Path(d).name, rows))
        lines.append(summary(Path(d).name, rows))
    text = "\n\n".join(parts) + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
