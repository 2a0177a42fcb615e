"""Does a model's energy error follow broken bonds? (docs/reproduction.md, "The worst test cell")

    python launch/coordination_vs_error.py TESTSET.h5 EVALUATE_JSON [EVALUATE_JSON ...]
                                           [--pool POOL.h5] [--mult 1.15]

For every snapshot of TESTSET: the fraction of its atoms with fewer than 4 neighbours (ASE
``natural_cutoffs`` covalent radii times ``mult``; a diamond-lattice atom has 4) and the mean
coordination. For each ``evaluate.json`` of ``hpcdens evaluate`` on TESTSET (Harris-Foulkes energy
error in Ha/atom, mean epistemic std in e/Bohr^3): Spearman rank correlations of |error|, of the
signed error and of the epistemic std with that fraction, and the cells with the most
under-coordinated atoms. ``--pool``: the same fraction over a training pool, to say whether the
test cells leave its range.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.stats import spearmanr

from hpcdens.io.training_set import read_training_set


def coordination(path: str, mult: float) -> dict[str, tuple[float, float]]:
    """{snapshot key: (fraction of atoms with < 4 neighbours, mean coordination)}."""
    out = {}
    for s in read_training_set(path):
        i = neighbor_list("i", s.atoms, natural_cutoffs(s.atoms, mult=mult))
        counts = np.bincount(i, minlength=len(s.atoms))
        out[s.key] = (float(np.mean(counts < 4)), float(counts.mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("testset")
    ap.add_argument("evaluations", nargs="+", metavar="EVALUATE_JSON")
    ap.add_argument("--pool", help="training pool (.h5) for the range of the fraction")
    ap.add_argument("--mult", type=float, default=1.15, help="bond cutoff: covalent radii x mult")
    args = ap.parse_args()
    test = coordination(args.testset, args.mult)
    under = {k: v[0] for k, v in test.items()}
    print(f"under-coordinated fraction (< 4 neighbours within {args.mult} x covalent radii), "
          f"test cells: median {np.median(list(under.values())):.2f}, max "
          f"{max(under.values()):.2f}")
    if args.pool:
        pool = [v[0] for v in coordination(args.pool, args.mult).values()]
        print(f"pool cells: median {np.median(pool):.2f}, max {max(pool):.2f}")
    for path in args.evaluations:
        rows = {r["key"]: r for r in json.loads(Path(path).read_text())["rows"]}
        keys = [k for k in rows if k in under]
        u = [under[k] for k in keys]
        err = [rows[k]["error_ha_per_atom"] for k in keys]
        epi = [rows[k]["epistemic_std_mean"] for k in keys]
        print(f"\n{path} ({len(keys)} cells): Spearman with the under-coordinated fraction: "
              f"|E error| {spearmanr(u, np.abs(err))[0]:+.2f}, signed E error "
              f"{spearmanr(u, err)[0]:+.2f}, epistemic std {spearmanr(u, epi)[0]:+.2f}; "
              f"epistemic std with |E error| {spearmanr(epi, np.abs(err))[0]:+.2f}")
        print("| cell | under-coordinated | mean coordination | E error (Ha/atom) |")
        print("|---|---|---|---|")
        for k in sorted(keys, key=lambda k: -under[k])[:5]:
            print(f"| {k} | {under[k]:.2f} | {test[k][1]:.2f} | "
                  f"{rows[k]['error_ha_per_atom']:+.2e} |")


if __name__ == "__main__":
    main()
