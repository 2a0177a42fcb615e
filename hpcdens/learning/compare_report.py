"""The table (printed) and the learning-curve plot of ``hpcdens learn-compare`` (rows of
:func:`hpcdens.learning.compare.aggregate`; energies in Ha/atom, NRMSE dimensionless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import energy as en
from ..config_sections import LATER_DEFAULTS


def _fmt(v, spec):
    """``v`` formatted with ``spec`` (such as ">13.3e"); None as "-" of the same width."""
    if v is not None:
        return format(v, spec)
    width = "".join(c for c in spec.split(".")[0] if c.isdigit())
    return format("-", f">{width}")


def to_chemical_accuracy(rows: list[dict], runs: list[dict]) -> list[dict]:
    """The paper's measure of a strategy: how many training compositions until every test
    snapshot used is within chemical accuracy. One entry per strategy (runs grouped by
    ``strategy`` and ``pick``, in the order of ``runs``): per run the smallest ``n_training`` of a
    round with ``chemically_accurate`` (None: no round reached it) and the largest it trained;
    over the runs that reached it, min / median / max."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        mine = sorted((r for r in rows if r["name"] == run["name"]),
                      key=lambda r: (r["n_training"], r["round"]))
        reached = [r["n_training"] for r in mine if r["chemically_accurate"]]
        groups.setdefault((run["strategy"], run["pick"]), []).append({
            "name": run["name"], "reached_at": reached[0] if reached else None,
            "largest_trained": max((r["n_training"] for r in mine), default=None)})
    out = []
    for (strategy, pick), members in groups.items():
        hit = sorted(m["reached_at"] for m in members if m["reached_at"] is not None)
        out.append({"strategy": strategy, "pick": pick, "runs": members,
                    "n_runs": len(members), "n_reached": len(hit),
                    "min": hit[0] if hit else None,
                    "median": float(np.median(hit)) if hit else None,
                    "max": hit[-1] if hit else None})
    return out


def format_accuracy(summary: list[dict]) -> str:
    """The table of :func:`to_chemical_accuracy`: per strategy, the compositions each run needed
    (">N": not reached with the N it trained) and min / median / max over the runs that did."""
    head = (f"{'strategy':<22} {'runs':>4} {'reached':>7} {'min':>4} {'median':>6} {'max':>4}  "
            "per run")
    lines = ["training compositions until every test snapshot is within chemical accuracy",
             head, "-" * len(head)]
    for g in summary:
        default = g["pick"] == LATER_DEFAULTS["learn"]["pick"]
        name = g["strategy"] if default else f"{g['strategy']} ({g['pick']})"
        per_run = ", ".join(str(m["reached_at"]) if m["reached_at"] is not None
                            else f">{m['largest_trained']}" for m in g["runs"])
        lines.append(f"{str(name):<22} {g['n_runs']:>4} {g['n_reached']:>7} "
                     f"{_fmt(g['min'], '>4')} {_fmt(g['median'], '>6.1f')} "
                     f"{_fmt(g['max'], '>4')}  {per_run}")
    return "\n".join(lines)


def seed_spread(rows: list[dict], runs: list[dict]) -> list[dict]:
    """The spread over seeds: runs grouped by ``strategy`` and ``pick`` as in
    :func:`to_chemical_accuracy` (runs that differ only in a seed), one entry per group and
    round with every run's mean and max energy error (Ha/atom) in ``per_run`` and, over the
    runs, the mean / min / max of their means and the median / min / max of their maxima.
    Rounds without energies are left out."""
    groups: dict[tuple, dict[int, list[dict]]] = {}
    for run in runs:
        by_round = groups.setdefault((run["strategy"], run["pick"]), {})
        for r in rows:
            if r["name"] == run["name"] and r["mean_abs_error_ha_per_atom"] is not None:
                by_round.setdefault(r["round"], []).append(r)
    out = []
    for (strategy, pick), by_round in groups.items():
        for rnd, members in sorted(by_round.items()):
            means = np.array([m["mean_abs_error_ha_per_atom"] for m in members])
            maxes = np.array([m["max_abs_error_ha_per_atom"] for m in members])
            n_train = sorted({m["n_training"] for m in members})
            out.append({"strategy": strategy, "pick": pick, "round": rnd, "n_runs": len(members),
                        "n_training": n_train,
                        "per_run": [{"name": m["name"], "mean": m["mean_abs_error_ha_per_atom"],
                                     "max": m["max_abs_error_ha_per_atom"]} for m in members],
                        "mean_of_means": float(means.mean()), "min_mean": float(means.min()),
                        "max_mean": float(means.max()), "median_max": float(np.median(maxes)),
                        "min_max": float(maxes.min()), "max_max": float(maxes.max())})
    return out


def format_spread(spread: list[dict]) -> str:
    """The table of :func:`seed_spread` ('' when no strategy has more than one run)."""
    if all(g["n_runs"] < 2 for g in spread):
        return ""
    head = (f"{'strategy':<22} {'round':>5} {'n_train':>7} {'runs':>4} "
            f"{'mean|E| (min-max)':>28} {'max|E| median (min-max)':>30}")
    lines = ["energy errors over seeds (Ha/atom): runs of one strategy and pick", head,
             "-" * len(head)]
    for g in spread:
        default = g["pick"] == LATER_DEFAULTS["learn"]["pick"]
        name = g["strategy"] if default else f"{g['strategy']} ({g['pick']})"
        lo, hi = g["n_training"][0], g["n_training"][-1]
        n_train = str(lo) if lo == hi else f"{lo}-{hi}"
        lines.append(f"{str(name):<22} {g['round']:>5} {n_train:>7} {g['n_runs']:>4} "
                     f"{g['mean_of_means']:>9.2e} ({g['min_mean']:.2e}-{g['max_mean']:.2e}) "
                     f"{g['median_max']:>10.2e} ({g['min_max']:.2e}-{g['max_max']:.2e})")
    return "\n".join(lines)


def format_table(rows: list[dict], exclude_training: bool) -> str:
    which = ("held-out test snapshots (training compositions excluded)" if exclude_training
             else "all test snapshots")
    head = (f"{'strategy':<13} {'name':<16} {'round':>5} {'n_train':>7} {'n_test':>6} "
            f"{'mean|E| Ha/at':>13} {'max|E| Ha/at':>13} {'mean NRMSE':>10} {'max NRMSE':>10} "
            f"{'chem.acc.':>9}")
    lines = [f"errors over {which}; chemical accuracy: max |E error| <= "
             f"{en.CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom (1 kcal/mol)", head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["chemically_accurate"] is None else (
            f"{'yes' if r['chemically_accurate'] else 'no'} {r['n_chemically_accurate']}/"
            f"{r['n_test']}")
        lines.append(f"{str(r['strategy']):<13} {r['name'][:16]:<16} {r['round']:>5} "
                     f"{r['n_training']:>7} {r['n_test']:>6} "
                     f"{_fmt(r['mean_abs_error_ha_per_atom'], '>13.3e')} "
                     f"{_fmt(r['max_abs_error_ha_per_atom'], '>13.3e')} "
                     f"{_fmt(r['mean_nrmse'], '>10.3e')} {_fmt(r['max_nrmse'], '>10.3e')} "
                     f"{acc:>9}")
    return "\n".join(lines)


def plot_learning_curves(path: Path, rows: list[dict], runs: list[dict],
                         exclude_training: bool) -> None:
    """Energy error (left) and density NRMSE (right) vs number of training compositions: one
    colour per learn directory, mean solid, max dashed, log y; chemical accuracy line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, (ae, an) = plt.subplots(1, 2, figsize=(10, 4.2))
    handles = []
    for i, run in enumerate(runs):
        # One colour and marker per run, markers smaller for later runs: identical curves (the
        # first round of every strategy trains the same model) stay visible one inside the other.
        colour, marker = f"C{i % 10}", "o^sDvP"[i % 6]
        size = max(3.0, 9.0 - 1.5 * i)
        mine = sorted((r for r in rows if r["name"] == run["name"]),
                      key=lambda r: (r["n_training"], r["round"]))
        for ax, mean_key, max_key in ((ae, "mean_abs_error_ha_per_atom",
                                       "max_abs_error_ha_per_atom"),
                                      (an, "mean_nrmse", "max_nrmse")):
            pts = [(r["n_training"], r[mean_key], r[max_key]) for r in mine
                   if r[mean_key] is not None]
            if pts:
                x, mean, mx = (np.array(v, dtype=float) for v in zip(*pts))
                ax.plot(x, mean, "-", marker=marker, ms=size, color=colour)
                ax.plot(x, mx, "--", marker=marker, ms=size, color=colour, mfc="none")
        handles.append(Line2D([], [], color=colour, marker=marker,
                              label=f"{run['strategy']} ({run['name']})"))
    ae.axhline(en.CHEMICAL_ACCURACY_HA_PER_ATOM, color="k", ls=":", lw=1)
    handles += [Line2D([], [], color="gray", ls="-", label="mean (filled)"),
                Line2D([], [], color="gray", ls="--", label="max (open)"),
                Line2D([], [], color="k", ls=":",
                       label=f"chemical accuracy {en.CHEMICAL_ACCURACY_HA_PER_ATOM:g} Ha/atom")]
    ae.set_ylabel("|E_HF - E_DFT| (Ha/atom)")
    an.set_ylabel("density NRMSE")
    which = "held-out test snapshots" if exclude_training else "all test snapshots"
    for ax, title in ((ae, "energy error"), (an, "density error")):
        ax.set_yscale("log")
        ax.set_xlabel("training compositions")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{title} ({which})", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    ae.legend(handles=handles, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
