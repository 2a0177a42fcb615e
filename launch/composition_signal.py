"""Does the epistemic uncertainty see compositions a model was not trained on, and is it the
composition or the lattice constant that it sees? (issue #14, docs/uncertainty.md, "Which
compositions the uncertainty sees".)

For a model and a DFT test set (e.g. the 45 compositions k/8 of the SiGeSn study): every test
snapshot is predicted twice on one rank, as it is (at its own Vegard lattice constant) and
rescaled to the lattice constant of the nearest training composition (the control: the same
composition at a lattice constant the model was trained on), and compared with the DFT errors
of an ``hpcdens evaluate`` of the same model. Prints the mean epistemic std (e/Bohr^3) and the
mean |E error| (Ha/atom, from the evaluation) of the trained and the held-out compositions and
their ratios.

    python launch/composition_signal.py MODEL TEST.h5 [--evaluation EVALUATE_DIR] [--md OUT.md]

The trained compositions are those of the model's training and validation snapshots (recorded
in the model file); their lattice constants are taken from the test snapshots of the same
compositions.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hpcdens.io.model import load_model
from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms
from hpcdens.training.data import load_snapshots


def lattice_constant(atoms) -> float:
    """Cubic lattice constant per conventional cell (Angstrom) of a diamond supercell."""
    return float(np.cbrt(atoms.get_volume() / len(atoms) * 8))


def model_compositions(training: dict) -> set[str]:
    """The compositions (snapshot key prefixes) of a model's training and validation snapshots,
    from its record's ``training`` table."""
    return {s["key"].split("/")[0]
            for s in training["train_snapshots"] + training["validation_snapshots"]}


def mean_epistemic(predictor, atoms, shape) -> float:
    pred = predict_atoms(MPI.COMM_SELF, atoms, predictor, shape=shape)
    return float(gather_fields(MPI.COMM_SELF, pred, ["epistemic_std"])["epistemic_std"].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("test")
    p.add_argument("--evaluation", help="hpcdens evaluate directory of the same model and test "
                   "set, for the energy errors")
    p.add_argument("--md")
    args = p.parse_args()
    predictor = load_predictor(MPI.COMM_SELF, args.model)
    trained = model_compositions(load_model(args.model)[1].training)
    test = load_snapshots([args.test])
    constants = sorted({round(lattice_constant(item.snapshot.atoms), 4) for item in test
                        if item.key.split("/")[0] in trained})
    errors = {} if not args.evaluation else {
        r["key"]: abs(float(r["error_ha_per_atom"]))
        for r in csv.DictReader(open(Path(args.evaluation) / "evaluate.csv"))}
    rows = []
    for item in test:
        atoms, shape = item.snapshot.atoms, item.snapshot.grid.shape
        a = lattice_constant(atoms)
        nearest = min(constants, key=lambda c: abs(c - a))
        control = atoms.copy()
        control.set_cell(atoms.cell * (nearest / a), scale_atoms=True)
        rows.append({"key": item.key, "seen": item.key.split("/")[0] in trained, "a": a,
                     "a_control": nearest, "own": mean_epistemic(predictor, atoms, shape),
                     "control": mean_epistemic(predictor, control, shape),
                     "error": errors.get(item.key, np.nan)})
    seen = np.array([r["seen"] for r in rows])
    col = lambda k: np.array([r[k] for r in rows])
    lines = [f"model {args.model}: {seen.sum()} test snapshots of trained compositions, "
             f"{(~seen).sum()} held out; training lattice constants {constants} A\n",
             "| quantity | trained | held out | held out / trained |", "|---|---|---|---|"]
    for name, a, unit in (("epistemic std, own lattice constant (1e-4 e/Bohr^3)", col("own"), 1e4),
                          ("epistemic std, at the nearest trained lattice constant (1e-4)",
                           col("control"), 1e4),
                          ("\\|E error\\| (1e-4 Ha/atom, evaluation)", col("error"), 1e4)):
        lines.append(f"| {name} | {unit * np.nanmean(a[seen]):.2f} | "
                     f"{unit * np.nanmean(a[~seen]):.2f} | "
                     f"{np.nanmean(a[~seen]) / np.nanmean(a[seen]):.2f} |")
    own, err = col("own"), col("error")
    ok = np.isfinite(err)
    if ok.sum() > 2:
        lines.append(f"\nSpearman rank correlation of epistemic std and |E error| over the "
                     f"cells: {spearman(own[ok], err[ok]):.2f}")
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


if __name__ == "__main__":
    main()
