"""The per-round table (printed and ``DIR/rounds.csv``) and the plots of ``hpcdens learn``.

Score: the run's ``aggregate`` (``[learn] score``, :mod:`hpcdens.learning.loop`): e/Bohr^3 for the
density score, Ha/atom for the energy score. Plots (matplotlib, Agg): ``DIR/scores.png`` (scores
over the composition space per scored round: binary line vs fraction, ternary triangle coloured by
score, more elements: score vs the fraction of the first element, one marker per candidate) and
``DIR/learning_curve.png`` (validation NRMSE vs number of training compositions).
"""

from __future__ import annotations

from pathlib import Path

from ..composition import parse_composition
from ..io.files import write_csv

COLUMNS = ("round", "n_training", "training", "labelled", "chosen", "chosen_score",
           "max_score", "validation_nrmse", "dft_wall_s")


def rows(state: dict) -> list[dict]:
    """One row per round of the journal."""
    out = []
    for r in state["rounds"]:
        scores = r.get("scores") or {}
        chosen = r.get("chosen") or []
        out.append({
            "round": r["round"], "n_training": len(r["training"]),
            "training": " ".join(r["training"]), "labelled": " ".join(r["new"]),
            "chosen": " ".join(chosen),
            "chosen_score": " ".join(f"{scores[c]:.4g}" for c in chosen if c in scores),
            "max_score": f"{max(scores.values()):.4g}" if scores else "",
            "validation_nrmse": ("" if r.get("validation_nrmse") is None
                                 else f"{r['validation_nrmse']:.4g}"),
            "dft_wall_s": f"{r.get('dft_wall_s', 0.0):.1f}" if r.get("labelled") else ""})
    return out


def table(state: dict) -> str:
    lines = [f"strategy {state['strategy']}; score = {state.get('aggregate', '-')}",
             f"{'round':>5} {'n_train':>7}  {'labelled this round':<34} {'val NRMSE':>10} "
             f"{'DFT s':>7}  chosen (score)"]
    for row in rows(state):
        chosen = row["chosen"].split()
        scores = row["chosen_score"].split()
        pick = ", ".join(f"{c} ({s})" for c, s in zip(chosen, scores)) if scores else \
            ", ".join(chosen)
        lines.append(f"{row['round']:>5} {row['n_training']:>7}  {row['labelled']:<34} "
                     f"{row['validation_nrmse'] or '-':>10} {row['dft_wall_s'] or '-':>7}  "
                     f"{pick or '-'}")
    if state.get("stopped"):
        lines.append(f"stopped: {state['stopped']}")
    return "\n".join(lines)


def _fractions(label: str, elements) -> list[float]:
    return list(parse_composition(label.replace("_", ""), elements).fractions)


def plot_scores(state: dict, path: Path) -> bool:
    """Scores over the composition space, one panel per scored round. False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scored = [r for r in state["rounds"] if r.get("scores")]
    if not scored:
        return False
    els = state["elements"]
    unit = "Ha/atom" if "Ha/atom" in state.get("aggregate", "") else "e/Bohr^3"
    fig, axes = plt.subplots(1, len(scored), figsize=(4.5 * len(scored), 4), squeeze=False)
    for ax, r in zip(axes[0], scored):
        labels = list(r["scores"])
        f = np.array([_fractions(lb, els) for lb in labels])
        s = np.array([r["scores"][lb] for lb in labels])
        train = np.array([_fractions(lb, els) for lb in r["training"]])
        chosen = np.array([_fractions(lb, els) for lb in r.get("chosen") or []]).reshape(-1, len(els))
        if len(els) == 3:
            def xy(a):
                return a[:, 1] + 0.5 * a[:, 2], np.sqrt(3) / 2 * a[:, 2]
            sc = ax.scatter(*xy(f), c=s, cmap="viridis", s=60)
            fig.colorbar(sc, ax=ax, label=f"score ({unit})")
            ax.scatter(*xy(train), facecolors="white", edgecolors="k", s=60, label="training")
            if len(chosen):
                ax.scatter(*xy(chosen), marker="x", c="r", s=80, label="chosen")
            ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], "k-", lw=0.8)
            for (x, y), el in zip([(0, 0), (1, 0), (0.5, np.sqrt(3) / 2)], els):
                ax.annotate(el, (x, y), ha="center", va="bottom")
            ax.set_aspect("equal")
            ax.axis("off")
        else:
            order = np.argsort(f[:, 0])
            ax.plot(f[order, 0], s[order], "o-" if len(els) == 2 else "o")
            if len(chosen):
                ax.scatter(chosen[:, 0], [r["scores"][lb] for lb in r["chosen"]], marker="x",
                           c="r", s=80, zorder=3, label="chosen")
            ax.set_xlabel(f"fraction of {els[0]}" + ("" if len(els) == 2 else " (projection)"))
            ax.set_ylabel(f"score ({unit})")
        ax.set_title(f"round {r['round']} ({len(r['training'])} training compositions)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_learning_curve(state: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(len(r["training"]), r["validation_nrmse"]) for r in state["rounds"]
           if r.get("validation_nrmse") is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(*zip(*pts), "o-", label=state["strategy"])
    ax.set_xlabel("training compositions")
    ax.set_ylabel("validation NRMSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(state: dict, directory: Path, plots: bool = True) -> str:
    """Write rounds.csv (and the plots); return the table text."""
    directory = Path(directory)
    write_csv(directory / "rounds.csv", rows(state), COLUMNS)
    text = table(state) + f"\ntable -> {directory / 'rounds.csv'}"
    if plots:
        if plot_scores(state, directory / "scores.png"):
            text += f"\nscores -> {directory / 'scores.png'}"
        if plot_learning_curve(state, directory / "learning_curve.png"):
            text += f"\nlearning curve -> {directory / 'learning_curve.png'}"
    return text
