"""Table of a generalisation suite (launch/generalisation_sigesn.sh): every model x test cell.

    python launch/suite_table.py DIR CASE [CASE ...]

reads DIR/<tag>/<case>/evaluate.csv (and regions.csv where the cell has vacancies or segregation
blocks) for every model tag under DIR, writes DIR/suite.csv (one row per cell) and DIR/suite.md
(the per-cell table and, per model, the mean and max |energy error| and the count within chemical
accuracy, 1.6e-3 Ha/atom) and prints the markdown. Units: Ha/atom, e/Bohr^3, percent.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

CHEMICAL_ACCURACY = 1.6e-3
COLUMNS = ("model", "case", "key", "composition", "formula", "n_atoms", "error_ha_per_atom",
           "nrmse", "relative_l1_percent", "worst_region_relative_l1_percent", "epistemic_std_mean",
           "chemically_accurate")


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_rows(root: Path, cases: list[str]) -> list[dict]:
    rows = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for case in cases:
            path = model_dir / case / "evaluate.csv"
            if not path.is_file():
                continue
            with path.open() as f:
                for r in csv.DictReader(f):
                    rows.append({"model": model_dir.name, "case": case,
                                 **{c: r.get(c) for c in COLUMNS[2:]}})
    return rows


def summary(rows: list[dict]) -> list[tuple]:
    out = []
    for model in sorted({r["model"] for r in rows}):
        errs = [abs(e) for r in rows if r["model"] == model
                and (e := _float(r["error_ha_per_atom"])) is not None]
        if errs:
            out.append((model, len(errs), sum(errs) / len(errs), max(errs),
                        sum(e <= CHEMICAL_ACCURACY for e in errs)))
    return out


def markdown(rows: list[dict]) -> str:
    def fmt(v, spec):
        x = _float(v)
        return "-" if x is None else format(x, spec)

    header = ("| model | case | cell | atoms | E error (Ha/atom) | NRMSE | rel. L1 (%) "
              "| worst region rel. L1 (%) | mean epistemic std |")
    lines = [header, "|---" * 9 + "|"]
    for r in rows:
        cell = r.get("formula") or r["composition"]   # Ge23Si24Sn16, not 0.36507936...
        lines.append(f"| {r['model']} | {r['case']} | {cell} | {r['n_atoms']} | "
                     f"{fmt(r['error_ha_per_atom'], '+.2e')} | {fmt(r['nrmse'], '.4f')} | "
                     f"{fmt(r['relative_l1_percent'], '.2f')} | "
                     f"{fmt(r['worst_region_relative_l1_percent'], '.2f')} | "
                     f"{fmt(r['epistemic_std_mean'], '.2e')} |")
    lines += ["", "| model | cells | mean \\|E error\\| (Ha/atom) | max | within 1.6e-3 |",
              "|---|---|---|---|---|"]
    for model, n, mean, worst, ok in summary(rows):
        lines.append(f"| {model} | {n} | {mean:.2e} | {worst:.2e} | {ok}/{n} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    rows = read_rows(root, argv[1:])
    with (root / "suite.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows)
    (root / "suite.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
