"""Where a prediction holds too many or too few electrons: the signed charge error of its raw
density against the DFT density, in shells of the distance to the nearest atom
(docs/reproduction-crfeconi.md, "Where Eq. 9's factor comes from").

    python launch/charge_by_distance.py EVAL_DIR TEST.h5 [--field rho] [--edges 0 0.5 1 ...]

EVAL_DIR holds the predictions of ``hpcdens evaluate`` (``EVAL_DIR/predictions/<key>.h5``). For
every cell of TEST.h5 with a prediction: sum (field - rho_DFT) dV per shell (electrons; the
shells add up to the cell's total, which Eq. 9 removes by rescaling everything), and the same
for the SAD (rho_SAD - rho_DFT: what a delta-rho model has to learn there). ``--field
rho_normalised`` gives the density after Eq. 9 (and the charge correction, where evaluate
applied it). Distances in Bohr, minimum image (hpcdens.regions.nearest_site_distance).
"""

import argparse
from pathlib import Path

import numpy as np
from ase.units import Bohr

from hpcdens.io.prediction import read_prediction
from hpcdens.io.training_set import read_training_set
from hpcdens.regions import nearest_site_distance, region_errors, shell_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--field", default="rho")
    ap.add_argument("--edges", type=float, nargs="+", default=[0, 0.5, 1.0, 1.5, 2.0, 3.0])
    args = ap.parse_args()
    edges = np.array([*args.edges, np.inf])
    names = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    print(f"signed charge error (e) per shell of the distance to the nearest atom (Bohr); "
          f"field {args.field}")
    print(f"{'cell':<34} {'total':>7} " + " ".join(f"{n:>8}" for n in names)
          + "   SAD - DFT per shell")
    pred_sums, sad_sums, fractions = [], [], []
    for snap in read_training_set(args.test):
        path = args.eval_dir / "predictions" / (snap.key.replace("/", "__") + ".h5")
        if not path.is_file():
            continue
        rho = read_prediction(path, args.field).rho
        dist = nearest_site_distance(np.asarray(snap.atoms.cell) / Bohr,
                                     snap.grid.cartesian_points(), snap.atoms.positions / Bohr)
        shell = shell_of(dist, edges).reshape(snap.grid.shape)
        dv = snap.grid.voxel_volume_bohr3
        pred = [r["charge_error_e"] for r in region_errors(rho, snap.rho, shell, dv, edges)]
        sad = [r["charge_error_e"] for r in region_errors(snap.rho_sad, snap.rho, shell, dv,
                                                          edges)]
        pred_sums.append(pred), sad_sums.append(sad)
        fractions.append(np.bincount(shell.ravel(), minlength=len(names)) / shell.size)
        print(f"{snap.key[:34]:<34} {sum(pred):>+7.3f} " + " ".join(f"{x:>+8.3f}" for x in pred)
              + "   " + " ".join(f"{x:+.2f}" for x in sad), flush=True)
    if not pred_sums:
        raise SystemExit(f"no prediction of a cell of {args.test} in {args.eval_dir}/predictions")
    mean = np.mean(pred_sums, axis=0)
    print(f"{'mean over ' + str(len(pred_sums)) + ' cells':<34} {mean.sum():>+7.3f} "
          + " ".join(f"{x:>+8.3f}" for x in mean) + "   "
          + " ".join(f"{x:+.2f}" for x in np.mean(sad_sums, axis=0)))
    print(f"{'fraction of the grid':<34} {'':>7} "
          + " ".join(f"{x:>8.3f}" for x in np.mean(fractions, axis=0)))


if __name__ == "__main__":
    main()
