"""Does a distance in descriptor space see what the epistemic std misses: vacancies and unseen
compositions? (issue #14, docs/uncertainty.md, "A distance to the training descriptors".)

For a model and labelled test cells: the descriptors of its training snapshots (a random subset
of points per snapshot, the validation snapshots left out) are the reference set; each grid point
of a cell gets its Euclidean distance to the nearest reference point in two spaces:

* ``descriptor``: the model's normalised descriptors, (x - x_mean) / x_std, projected on the
  first ``--components`` principal axes of the reference set;
* ``hidden``: the last hidden layer of the posterior-mean network (what the output layer sees).

A point is far when its distance exceeds the 99.9 % quantile of the validation snapshots' points
(so about 0.1 % of a validation snapshot's points are far). Each cell is scored as it is and
rescaled to the lattice constant of the nearest training snapshot (the control: composition and
chemistry without strain). Prints, per cell, the far fraction (%) in both spaces, own and
control, and the energy error of an ``hpcdens evaluate`` of the same model when given.

    python launch/descriptor_distance.py MODEL CELLS.h5 [CELLS.h5 ...] [--evaluation DIR ...]
        [--stride 4] [--md OUT.md]

One process, no MPI; memory about (reference points) x 5M x 8 bytes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from ase.units import Bohr
from composition_signal import lattice_constant, model_compositions, spearman

from hpcdens.descriptors import descriptors
from hpcdens.io.model import load_model
from hpcdens.io.training_set import read_snapshot, snapshot_keys
from hpcdens.neighbors import NeighborSearch

QUANTILE = 0.999


def cell_descriptors(atoms, grid, m: int, stride: int = 1, n_random: int | None = None,
                     rng=None) -> np.ndarray:
    """Descriptors of every ``stride``-th grid point (C order) or of ``n_random`` random ones."""
    total = int(np.prod(grid.shape))
    idx = (np.sort(rng.choice(total, n_random, replace=False)) if n_random
           else np.arange(0, total, stride))
    frac = np.stack(np.unravel_index(idx, grid.shape), 1) / np.asarray(grid.shape)
    search = NeighborSearch(atoms.positions / Bohr, atoms.numbers, np.asarray(atoms.cell) / Bohr,
                            m=m)
    return descriptors(frac @ grid.cell_bohr, search, m)


class Spaces:
    """The two feature maps and their reference sets (float32, distances by one GEMM)."""

    def __init__(self, net, reference: np.ndarray, components: int):
        self.net = net
        self.x_mean = net.x_mean.double().numpy()
        self.x_std = net.x_std.double().numpy()
        z = self._normalise(reference)
        self.centre = z.mean(0)
        self.axes = np.linalg.svd(z - self.centre, full_matrices=False)[2][:components].T
        self.ref = {name: torch.from_numpy(f(reference)).float() for name, f in self.maps()}
        self.threshold = {}

    def _normalise(self, x):
        return (x - self.x_mean) / self.x_std

    def _descriptor(self, x):
        return (self._normalise(x) - self.centre) @ self.axes

    @torch.no_grad()
    def _hidden(self, x):
        h = torch.from_numpy(self._normalise(x))
        for layer in self.net.layers[:-1]:
            h = torch.nn.functional.silu(torch.nn.functional.linear(
                h, layer.weight_mu.double(), layer.bias_mu.double()))
        return h.numpy()

    def maps(self):
        return (("descriptor", self._descriptor), ("hidden", self._hidden))

    def distances(self, x) -> dict:
        """Per space, each row's distance to its nearest reference point."""
        out = {}
        for name, f in self.maps():
            ref, q = self.ref[name], torch.from_numpy(f(x)).float()
            r2 = (ref * ref).sum(1)
            out[name] = torch.cat([
                ((b * b).sum(1)[:, None] + r2[None] - 2 * b @ ref.T).min(1).values
                for b in q.split(1024)]).clamp(min=0).sqrt().numpy()
        return out

    def far(self, x) -> dict:
        """Per space, the fraction of rows farther than the validation threshold."""
        return {k: float((d > self.threshold[k]).mean()) for k, d in self.distances(x).items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("cells", nargs="+", help="labelled cells (hpcdens generate files)")
    p.add_argument("--evaluation", nargs="*", default=[], help="hpcdens evaluate directories "
                   "of the same model, one per CELLS file in the same order, for the energy "
                   "errors")
    p.add_argument("--ref-points", type=int, default=3000, help="reference points per training "
                   "snapshot (default 3000)")
    p.add_argument("--val-points", type=int, default=10000)
    p.add_argument("--components", type=int, default=32)
    p.add_argument("--stride", type=int, default=4, help="score every STRIDE-th grid point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--md")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    net, record = load_model(args.model)
    m, training = record.n_neighbors, record.training
    data = training["data_files"]
    validation = {(s["file"], s["key"]) for s in training["validation_snapshots"]}
    ref, val, constants = [], [], set()
    trained = model_compositions(training)
    for i, path in enumerate(data):
        for key in snapshot_keys(path):
            snap = read_snapshot(path, key)
            constants.add(round(lattice_constant(snap.atoms), 4))
            n = args.val_points if (i, key) in validation else args.ref_points
            (val if (i, key) in validation else ref).append(
                cell_descriptors(snap.atoms, snap.grid, m, n_random=n, rng=rng))
    spaces = Spaces(net, np.concatenate(ref), args.components)
    for name, d in spaces.distances(np.concatenate(val)).items():
        spaces.threshold[name] = float(np.quantile(d, QUANTILE))
    val_far = [spaces.far(x) for x in val]
    if args.evaluation and len(args.evaluation) != len(args.cells):
        p.error(f"--evaluation needs one directory per CELLS file ({len(args.cells)}), "
                f"got {len(args.evaluation)}")
    errors = {(path, r["key"]): float(r["error_ha_per_atom"])
              for path, directory in zip(args.cells, args.evaluation)
              for r in csv.DictReader(open(Path(directory) / "evaluate.csv"))}
    lines = [f"model {args.model}: {sum(len(x) for x in ref)} reference points from "
             f"{len(ref)} training snapshots, {args.components} principal axes of the "
             f"descriptor; thresholds (99.9 % of {len(val)} validation snapshots' points) "
             f"descriptor {spaces.threshold['descriptor']:.3g}, hidden "
             f"{spaces.threshold['hidden']:.3g}; validation snapshots far: descriptor "
             f"{max(v['descriptor'] for v in val_far):.2%}, hidden "
             f"{max(v['hidden'] for v in val_far):.2%} at most\n",
             "| cell | E error (Ha/atom) | descriptor far, own / control (%) | "
             "hidden far, own / control (%) |", "|---|---|---|---|"]
    rows = []
    for path in args.cells:
        for key in snapshot_keys(path):
            snap = read_snapshot(path, key)
            atoms = snap.atoms
            a = lattice_constant(atoms)
            nearest = min(constants, key=lambda c: abs(c - a))
            control = atoms.copy()
            control.set_cell(atoms.cell * (nearest / a), scale_atoms=True)
            grid = type(snap.grid)(snap.grid.cell_bohr * (nearest / a), snap.grid.shape)
            own = spaces.far(cell_descriptors(atoms, snap.grid, m, args.stride))
            ctl = spaces.far(cell_descriptors(control, grid, m, args.stride))
            err = errors.get((path, key), np.nan)
            lines.append(f"| {Path(path).stem} {key} | {err:+.2e} | "
                         f"{100 * own['descriptor']:.2f} / {100 * ctl['descriptor']:.2f} | "
                         f"{100 * own['hidden']:.2f} / {100 * ctl['hidden']:.2f} |")
            print(lines[-1], flush=True)
            rows.append({"seen": key.split("/")[0] in trained, "error": abs(err),
                         **{f"{k}_own": v for k, v in own.items()},
                         **{f"{k}_control": v for k, v in ctl.items()}})
    text = "\n".join(lines + summary(rows))
    print("\n" + text)
    if args.md:
        Path(args.md).write_text(text + "\n")


def summary(rows: list[dict]) -> list[str]:
    """Mean far fractions of the cells of trained and of held-out compositions, their ratio, and
    the rank correlation of each with |E error| (where the errors are known)."""
    seen = np.array([r["seen"] for r in rows])
    err = np.array([r["error"] for r in rows])
    if seen.all() or not seen.any():
        return []
    lines = ["", f"{seen.sum()} cells of trained compositions, {(~seen).sum()} held out:", "",
             "| far fraction | trained (%) | held out (%) | held out / trained | rank corr. "
             "with \\|E error\\| |", "|---|---|---|---|---|"]
    ok = np.isfinite(err)
    for name in ("descriptor_own", "descriptor_control", "hidden_own", "hidden_control"):
        a = np.array([r[name] for r in rows])
        corr = spearman(a[ok], err[ok]) if ok.sum() > 2 else np.nan
        lines.append(f"| {name.replace('_', ', ')} | {100 * a[seen].mean():.2f} | "
                     f"{100 * a[~seen].mean():.2f} | {a[~seen].mean() / a[seen].mean():.1f} | "
                     f"{corr:.2f} |")
    return lines


if __name__ == "__main__":
    main()
