"""``hpcdens select-m``: validation error against the number of neighbours M (the paper's
Fig. 12). For each M it trains one network on the same data, the same split, the same sampled
points and the same seeds (only the descriptors change), with the loop of ``hpcdens train``, and
reports the best validation NRMSE. Writes a CSV table and a PNG plot (rank 0)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..errors import InputError
from ..io.files import output_file, write_csv
from ..parallel.collective import on_root, self_comm
from .data import load_snapshots, n_validation
from .loop import TrainState, fit, new_model, prepare_data
from .run import check_inputs, default_paths

log = logging.getLogger(__name__)

COLUMNS = ("M", "n_in", "val_nrmse", "val_rel_l1_percent", "val_loss", "baseline_nrmse",
           "best_epoch", "epochs_run", "train_time_s")


def check_outputs(csv_path: Path, overwrite: bool) -> None:
    """The CSV and its PNG (same name, .png) may be written; raises InputError with the fix."""
    for path in (csv_path, csv_path.with_suffix(".png")):
        output_file(path, overwrite)


def check_ms(ms) -> list[int]:
    """The distinct values of M in the order given; each must be >= 1."""
    ms = list(dict.fromkeys(int(m) for m in ms))
    if not ms or min(ms) < 1:
        raise InputError(f"--m needs one or more values >= 1, got {ms}. Fix: e.g. --m 10 20 30 55")
    return ms


def run_select_m(config, ms, data=None, out=None, comm=None, overwrite: bool = False,
                 progress: bool = False) -> list[dict]:
    """Train one network per M in ``ms``; returns the rows of the table (every rank) and writes
    ``out`` (default ``<output.directory>/select_m.csv``) and its .png on rank 0."""
    if comm is None:
        comm = self_comm()
    ms = check_ms(ms)
    paths, _ = default_paths(config, data)
    out = Path(out or Path(config.output.directory) / "select_m.csv")
    check_inputs(paths)
    on_root(comm, check_outputs, out, overwrite)
    labelled = load_snapshots(paths)
    if n_validation(len(labelled), config.train.validation_fraction) == 0:
        raise InputError(f"select-m compares validation errors, but {len(labelled)} snapshot(s) "
                         f"with validation_fraction {config.train.validation_fraction} leave none "
                         "for validation. Fix: use >= 2 snapshots and validation_fraction > 0")
    rows = [_train_one(config, paths, labelled, m, comm, progress) for m in ms]
    if comm.rank == 0:
        write_csv(out, rows, COLUMNS)
        plot(out.with_suffix(".png"), rows, config.name)
        print(format_table(rows))
        print(f"table -> {out}, plot -> {out.with_suffix('.png')}")
    return rows


def _train_one(config, paths, labelled, m: int, comm, progress: bool) -> dict:
    t0 = time.perf_counter()
    data = prepare_data(config, paths, comm, m=m, labelled=labelled)
    model = new_model(config, data, comm)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
    state = fit(model, optimizer, data, config, comm, TrainState(), progress=progress)
    best = state.best_metrics
    row = {"M": m, "n_in": 5 * m, "val_nrmse": best["nrmse"],
           "val_rel_l1_percent": best["relative_l1_percent"], "val_loss": best["loss"],
           "baseline_nrmse": best["baseline_nrmse"], "best_epoch": state.best_epoch,
           "epochs_run": state.epoch, "train_time_s": time.perf_counter() - t0}
    if comm.rank == 0:
        log.info("M = %d: validation NRMSE %.4g (best epoch %d of %d), %.1f s", m,
                 row["val_nrmse"], row["best_epoch"], row["epochs_run"], row["train_time_s"])
    return row


def format_table(rows: list[dict]) -> str:
    """The rows as a text table; the best M is marked with '*'."""
    best = min(rows, key=lambda r: r["val_nrmse"])["M"]
    lines = [f"{'M':>5} {'val NRMSE':>11} {'val L1 %':>9} {'baseline':>9} {'epochs':>7} {'s':>7}"]
    for r in rows:
        lines.append(f"{r['M']:>5} {r['val_nrmse']:>11.4e} {r['val_rel_l1_percent']:>9.3f} "
                     f"{r['baseline_nrmse']:>9.4f} {r['epochs_run']:>7} "
                     f"{r['train_time_s']:>7.1f}{' *' if r['M'] == best else ''}")
    return "\n".join(lines)


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Validation NRMSE against M (Fig. 12 of the paper), Agg canvas, no global backend change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(rows, key=lambda r: r["M"])
    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([r["M"] for r in rows], [r["val_nrmse"] for r in rows], "o-")
    best = min(rows, key=lambda r: r["val_nrmse"])
    ax.plot([best["M"]], [best["val_nrmse"]], "r*", ms=12, label=f"best M = {best['M']}")
    ax.set_xlabel("M (nearest atoms per grid point)")
    ax.set_ylabel("validation NRMSE")
    ax.set_title(f"{title}: descriptor size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)




