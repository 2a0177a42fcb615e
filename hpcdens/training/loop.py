"""The training loop of ``hpcdens train``: data-parallel over MPI, early stopping, resumable.

Between :mod:`hpcdens.train_data` (points, descriptors, split, normalisation) and
:mod:`hpcdens.bnn` (network, ELBO); the driver with files and checkpoints is :mod:`hpcdens.train`.
Design (details in docs/commands/train.md):

* **Data parallel.** Each rank holds a contiguous block of the global list of training points
  and of validation points. Gradients are averaged by ``DistributedDataParallel`` over a gloo
  process group; rank 0 picks a free TCP port and broadcasts address and port with mpi4py. Every
  rank takes the same number of optimiser steps per epoch (its block split into equal batches).
  Scalars (losses, error sums) are reduced with mpi4py. One process without mpirun trains
  without ``torch.distributed``.
* **Counter-based random streams.** Initial weights come from the stream (seed, INIT); epoch e on
  rank r shuffles and draws its weight noise from a fresh generator seeded by (seed, EPOCH, e, r).
  No random state carries over from one epoch to the next, so a run resumed from the checkpoint
  of epoch k continues exactly as the uninterrupted run would (same rank count).
* **Validation** after each epoch in evaluation mode (posterior-mean weights, deterministic):
  loss = KL/N_train + mean NLL over the validation points, and the NRMSE of the predicted density.
  Early stopping watches the validation loss, or the epoch-mean training loss when there is no
  validation snapshot; the best weights are kept and saved.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import socket
import time
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import bnn
from ..errors import HpcdensError, InputError
from ..metrics import SUM_KEYS, error_sums, errors_from_sums
from ..parallel.collective import allreduce
from .data import (
    Labelled,
    PointSet,
    build_points,
    data_hash,
    feature_spec,
    load_snapshots,
    normalisation_stats,
    split,
    torch_seed,
)

log = logging.getLogger(__name__)

_STREAM_INIT, _STREAM_EPOCH = 3, 4
_EVAL_ROWS = 65536
SPIKE_NATS = 1.0
"""An epoch whose monitored loss (nats per point) is this much above the best epoch's has blown
up: training goes back to the best weights at half the learning rate (docs/commands/train.md,
"Loss spikes")."""
MAX_ROLLBACKS = 5
CLIP_FACTOR = 10.0
"""Each batch gradient is clipped to this many times the last epoch's median gradient norm."""


class TrainingDiverged(HpcdensError):
    """Raised on every rank when the loss becomes NaN or infinite with no earlier epoch to go
    back to, or blows up more than ``MAX_ROLLBACKS`` times (exit code 1 in the CLI)."""


# ------------------------------------------------------------------------------------ data ---

@dataclass
class Dataset:
    """Everything one rank trains on: its blocks of training and validation points (``val`` is
    None without validation snapshots), the split, what goes into the model's metadata, and
    ``n_kl``, the N of the loss KL/N + mean NLL (``[train] kl_divisor``)."""

    labelled: list[Labelled]
    train_idx: list[int]
    val_idx: list[int]
    train: PointSet
    val: PointSet | None
    features: dict
    data_sha256: str
    files: list[str]
    n_kl: int


def prepare_data(config, paths, comm, m: int | None = None, labelled=None) -> Dataset:
    """Read (unless ``labelled`` is given), split, sample and describe the data on every rank.
    ``m`` overrides ``[descriptors] n_neighbors``. Raises InputError on all ranks together."""
    tc, m = config.train, int(m or config.descriptors.n_neighbors)
    labelled = labelled if labelled is not None else load_snapshots(paths)
    species = [frozenset(item.snapshot.atoms.numbers.tolist()) for item in labelled]
    train_idx, val_idx = split(len(labelled), tc.validation_fraction, tc.seed,
                               [item.key.split("/")[0] for item in labelled], species)
    common = dict(m=m, target=config.model.target, seed=tc.seed,
                  points_per_snapshot=tc.points_per_snapshot, comm=comm,
                  chunk_points=config.descriptors.chunk_points)
    train = build_points(labelled, train_idx, density_fraction=tc.density_fraction, **common)
    if train.n_global < comm.size:
        raise InputError(f"{train.n_global} training points for {comm.size} ranks. Fix: raise "
                         f"[train] points_per_snapshot or run on fewer ranks")
    val = build_points(labelled, val_idx, **common) if val_idx else None
    sha = comm.bcast(data_hash(labelled) if comm.rank == 0 else None, root=0)
    n_kl = kl_divisor(tc.kl_divisor, train.n_global,
                      [labelled[i].snapshot for i in train_idx])
    return Dataset(labelled, train_idx, val_idx, train, val, feature_spec(labelled, train_idx, m),
                   sha, [str(p) for p in paths], n_kl)


def kl_divisor(setting, n_sampled: int, snapshots) -> int:
    """N of the loss KL/N + mean NLL for ``[train] kl_divisor`` = ``setting``: the sampled
    training points, the grid points or the atoms of the training ``snapshots``, or the integer
    itself."""
    if setting == "sampled":
        return n_sampled
    if setting == "grid":
        return sum(s.grid.size for s in snapshots)
    if setting == "atoms":
        return sum(len(s.atoms) for s in snapshots)
    return int(setting)


def new_model(config, data: Dataset, comm) -> bnn.BayesianNet:
    """The initial network (weights from the stream (seed, INIT), the same on every rank) with
    normalisation statistics of all ranks' training points."""
    gen = torch.Generator().manual_seed(torch_seed(config.train.seed, _STREAM_INIT))
    model = bnn.build_model(data.features["n_in"], config.model, generator=gen)
    set_normalisation(model, normalisation_stats(data.train, comm))
    return model


@torch.no_grad()
def set_normalisation(model: bnn.BayesianNet, stats: dict) -> None:
    """Copy ``normalisation_stats`` into the model's buffers, with the guard of
    ``BayesianNet.fit_normalisation`` (a constant column gets std 1)."""
    x_mean, y_mean = torch.as_tensor(stats["x_mean"]), torch.tensor(stats["y_mean"])
    model.x_mean.copy_(x_mean)
    model.x_std.copy_(bnn._guarded_std(torch.as_tensor(stats["x_std"]), x_mean))
    model.y_mean.copy_(y_mean)
    model.y_std.copy_(bnn._guarded_std(torch.tensor(stats["y_std"]), y_mean))


# --------------------------------------------------------------------------- distribution ---

@contextmanager
def data_parallel(model: bnn.BayesianNet, comm):
    """The model as every rank trains it: itself on one rank, otherwise wrapped in
    ``DistributedDataParallel`` over a gloo process group of the ranks of ``comm``.

    Rank 0 binds a free TCP port and broadcasts (address, port): 127.0.0.1 when every rank runs
    on one host, otherwise $HPCDENS_MASTER_ADDR or rank 0's host name (gloo picks the interface;
    set GLOO_SOCKET_IFNAME on clusters with several networks).

    Yields a weak proxy: the wrapper (and with it the process group) is released here, before the
    group is destroyed, and rank 0, which hosts the rendezvous store, destroys its group last. A
    wrapper that outlived the group hung in its destructor while rank 0 had moved on."""
    if comm.size == 1:
        yield model
        return
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if dist.is_initialized():
        raise HpcdensError("torch.distributed is already initialised; hpcdens train makes its own "
                           "process group")
    one_host = len(set(comm.allgather(socket.gethostname()))) == 1
    addr, port = comm.bcast(_rendezvous(one_host) if comm.rank == 0 else None, root=0)
    dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=comm.rank,
                            world_size=comm.size)
    try:
        ddp = DistributedDataParallel(model, forward_sync_buffers=False)
        yield weakref.proxy(ddp)
    finally:
        ddp = None
        gc.collect()
        comm.Barrier()
        if comm.rank != 0:
            dist.destroy_process_group()
        comm.Barrier()
        if comm.rank == 0:
            dist.destroy_process_group()


def _rendezvous(one_host: bool) -> tuple[str, int]:
    """(address, free port) of rank 0 for the gloo rendezvous (called on rank 0 only)."""
    addr = "127.0.0.1" if one_host else os.environ.get(
        "HPCDENS_MASTER_ADDR", socket.gethostbyname(socket.getfqdn()))
    with socket.socket() as s:
        s.bind(("", 0))
        return addr, s.getsockname()[1]


def epoch_batches(x: torch.Tensor, y: torch.Tensor, n_steps: int, gen: torch.Generator):
    """This rank's shuffled points in ``n_steps`` batches of (nearly) equal size."""
    order = torch.randperm(x.shape[0], generator=gen)
    for idx in torch.tensor_split(order, n_steps):
        yield x[idx], y[idx]


def steps_per_epoch(n_global: int, size: int, batch_size: int) -> int:
    """Optimiser steps per epoch, the same on every rank: the smallest block (n // size points)
    in batches of at most about ``batch_size``, so that no rank gets an empty batch."""
    return max(1, math.ceil((n_global // size) / batch_size))


# ----------------------------------------------------------------------------- evaluation ---

@torch.no_grad()
def evaluate(model: bnn.BayesianNet, points: PointSet, n_train: int, comm) -> dict:
    """Validation metrics of ``points`` over all ranks, posterior-mean weights (eval mode).

    loss = KL/N_train + mean NLL (normalised units, as the training loss); nrmse and
    relative_l1_percent of the predicted density rho (target + rho_SAD for delta_rho); and
    baseline_nrmse, the density NRMSE of the training-mean predictor (y_mean, + rho_SAD)."""
    model.eval()
    y_mean, y_std = float(model.y_mean), float(model.y_std)
    nll, pred = 0.0, np.empty(len(points.target))
    for a in range(0, len(points.target), _EVAL_ROWS):
        x = torch.as_tensor(points.x[a:a + _EVAL_ROWS], dtype=model.x_mean.dtype)
        y = torch.as_tensor(points.target[a:a + _EVAL_ROWS], dtype=model.x_mean.dtype)
        f, s = model(x)
        nll += float(bnn.gaussian_nll(f, s, model.normalise_y(y)).double().sum())
        pred[a:a + len(y)] = f.double().numpy() * y_std + y_mean
    shift = points.rho - points.target
    sums = _reduce_sums(comm, error_sums(pred + shift, points.rho))
    base = allreduce(comm, float(np.sum((y_mean + shift - points.rho) ** 2)))
    nll = allreduce(comm, nll)
    out = errors_from_sums(sums)
    out["baseline_nrmse"] = math.sqrt(base / sums["n"]) / (sums["ref_max"] - sums["ref_min"])
    out["loss"] = float(model.kl()) / n_train + nll / sums["n"]
    return out


def _reduce_sums(comm, sums: dict) -> dict:
    out = {k: allreduce(comm, sums[k]) for k in SUM_KEYS}
    out["ref_max"] = allreduce(comm, sums["ref_max"], "max")
    out["ref_min"] = allreduce(comm, sums["ref_min"], "min")
    return out


# ------------------------------------------------------------------------------ the loop ---

@dataclass
class TrainState:
    """Where training stands after ``epoch`` completed epochs (what a checkpoint restores)."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)
    best_state: dict | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    lr_halvings: int = 0

    def done(self, epochs: int, patience: int) -> bool:
        return self.epoch >= epochs or self.bad_epochs >= patience


def fit(model, optimizer, data: Dataset, config, comm, state: TrainState, on_epoch=None,
        progress: bool = False, stop_after: int | None = None) -> TrainState:
    """Train until ``[train] epochs``, early stopping, or ``stop_after`` epochs in this call.

    ``on_epoch(state, model, optimizer)`` runs after every epoch on every rank (checkpoints).
    When training is done (epochs or patience reached) the model holds the best weights; after
    ``stop_after`` it holds the current ones, so that ``fit`` can be called again."""
    tc = config.train
    x = torch.as_tensor(data.train.x, dtype=model.x_mean.dtype)
    y = torch.as_tensor(data.train.target, dtype=model.x_mean.dtype)
    n_steps = steps_per_epoch(data.train.n_global, comm.size, tc.batch_size)
    bar = _progress_bar(tc.epochs, state.epoch, progress and comm.rank == 0)
    try:
        with data_parallel(model, comm) as net, _log_through(bar):
            budget = math.inf if stop_after is None else stop_after
            while not state.done(tc.epochs, tc.patience) and budget > 0:
                _one_epoch(net, model, optimizer, x, y, n_steps, data, config, comm, state)
                budget -= 1
                if comm.rank == 0:
                    _report(state, bar)
                if on_epoch is not None:
                    on_epoch(state, model, optimizer)
    finally:
        if bar is not None:
            bar.close()
    if state.done(tc.epochs, tc.patience) and state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state


def _one_epoch(net, model, optimizer, x, y, n_steps, data, config, comm, state: TrainState):
    t0 = time.perf_counter()
    lr = config.train.learning_rate * 0.5 ** state.lr_halvings
    for group in optimizer.param_groups:
        group["lr"] = lr
    gen = torch.Generator().manual_seed(
        torch_seed(config.train.seed, _STREAM_EPOCH, state.epoch, comm.rank))
    n_train = data.n_kl
    terms = bnn.train_epoch(net, optimizer, epoch_batches(x, y, n_steps, gen), n_train, gen,
                            max_grad_norm=clip_threshold(state), nll_beta=config.train.nll_beta)
    terms = {k: allreduce(comm, v) / comm.size for k, v in terms.items()}
    t1 = time.perf_counter()
    val = evaluate(model, data.val, n_train, comm) if data.val is not None else None
    monitor = val["loss"] if val else terms["loss"]
    entry = {"epoch": state.epoch + 1, "learning_rate": lr,
             **{f"train_{k}": v for k, v in terms.items()},
             **({f"val_{k}": v for k, v in val.items()} if val else {}),
             "train_s": t1 - t0, "val_s": time.perf_counter() - t1}
    if spiked(monitor, state):
        if state.best_state is None:
            raise TrainingDiverged(f"training diverged at epoch {state.epoch + 1} (loss "
                                   f"{monitor}). Fix: lower [train] learning_rate")
        _roll_back(model, optimizer, state, entry)
        return
    state.epoch += 1
    if monitor < state.best_loss:
        state.best_loss, state.best_epoch, state.bad_epochs = monitor, state.epoch, 0
        state.best_state = copy.deepcopy(model.state_dict())
        state.best_metrics = dict(val or {}, train_loss=terms["loss"])
    else:
        state.bad_epochs += 1
        if config.train.lr_patience and state.bad_epochs % config.train.lr_patience == 0:
            state.lr_halvings += 1   # [train] lr_patience: the next epochs at half the rate
    state.history.append(entry)


def clip_threshold(state: TrainState) -> float:
    """The gradient-norm clip of the next epoch: ``CLIP_FACTOR`` times the median batch gradient
    norm of the last epoch (no clip in the first epoch, or after a checkpoint without norms)."""
    norms = [h["train_grad_norm"] for h in state.history if "train_grad_norm" in h]
    return CLIP_FACTOR * norms[-1] if norms else math.inf


def spiked(monitor: float, state: TrainState) -> bool:
    """Whether an epoch's monitored loss (validation loss, or the training loss without
    validation; nats per point, the same on every rank) blew up: not finite, or more than
    ``SPIKE_NATS`` above the best epoch's."""
    return not math.isfinite(monitor) or monitor > state.best_loss + SPIKE_NATS


def rollbacks(state: TrainState) -> int:
    """How many epochs blew up and were rolled back (recorded in the history)."""
    return sum("rolled_back_to" in h for h in state.history)


def _roll_back(model, optimizer, state: TrainState, entry: dict):
    """After a loss spike: the best epoch's weights, a fresh optimizer state (its moments hold
    the spike's gradients), half the learning rate from now on. The epoch counts (towards
    ``epochs`` and patience). TrainingDiverged after ``MAX_ROLLBACKS`` of them."""
    if rollbacks(state) >= MAX_ROLLBACKS:
        raise TrainingDiverged(
            f"the loss blew up {MAX_ROLLBACKS + 1} times (last at epoch {entry['epoch']}: "
            f"{entry.get('val_loss', entry['train_loss']):.5g}, best epoch {state.best_epoch}: "
            f"{state.best_loss:.5g}). Fix: lower [train] learning_rate")
    model.load_state_dict(state.best_state)
    optimizer.state.clear()
    state.epoch += 1
    state.bad_epochs += 1
    state.lr_halvings += 1
    state.history.append(dict(entry, rolled_back_to=state.best_epoch))


def _log_through(bar):
    """While the bar is shown, log lines go through tqdm.write (the bar stays at the bottom)."""
    if bar is None:
        return nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="epoch", smoothing=0.1)


def _report(state: TrainState, bar) -> None:
    h = state.history[-1]
    if "rolled_back_to" in h:
        log.warning("epoch %d: loss %.5g, more than %g above the best epoch's (%d: %.5g): back "
                    "to epoch %d's weights, learning rate halved to %.3g", h["epoch"],
                    h.get("val_loss", h["train_loss"]), SPIKE_NATS, h["rolled_back_to"],
                    state.best_loss, h["rolled_back_to"], h["learning_rate"] / 2)
    if h.get("train_clipped"):
        log.info("epoch %d: %d batch gradients clipped to %g x the last epoch's median norm",
                 h["epoch"], h["train_clipped"], CLIP_FACTOR)
    val = (f" val_loss {h['val_loss']:.5g} val_nrmse {h['val_nrmse']:.4g}"
           if "val_loss" in h else "")
    # With a progress bar the epoch line is a debug message (-v); without one it is the progress.
    log.log(logging.DEBUG if bar is not None else logging.INFO,
            "epoch %d: loss %.5g (kl %.4g, nll %.5g)%s%s, lr %.3g, %.2f s", h["epoch"],
            h["train_loss"], h["train_kl"], h["train_nll"], val,
            " *" if state.bad_epochs == 0 else "", h["learning_rate"], h["train_s"] + h["val_s"])
    if bar is not None:
        post = {"loss": f"{h['train_loss']:.4g}"}
        if "val_nrmse" in h:
            post["val_nrmse"] = f"{h['val_nrmse']:.4g}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)
