"""``hpcdens train``: fit the Bayesian neural network to training sets, with checkpoints, resume and
MPI data parallelism; the model file carries the feature spec a predictor must match.

The driver: paths and output checks, checkpoints, model metadata and the command line. The data
pipeline is :mod:`hpcdens.train_data`, the loop :mod:`hpcdens.train_loop`, the M scan
:mod:`hpcdens.train_select_m`. Only rank 0 writes files; input errors are raised on every rank
together, before any work. Documentation: docs/commands/train.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch

from .. import __version__
from ..config_sections import without_later_defaults
from ..errors import HpcdensError, InputError
from ..io.files import output_file
from ..io.model import ModelRecord, save_model
from ..parallel.collective import on_root, self_comm
from .data import HASH_SCHEME, dft_settings, n_validation, valence_electrons
from .loop import Dataset, TrainState, fit, new_model, prepare_data, rollbacks

log = logging.getLogger(__name__)

CKPT_FORMAT, CKPT_VERSION = "hpcdens-train-checkpoint", 1
RNG_SCHEME = ("counter-based: initial weights from torch.Generator seeded by (train.seed, 3); "
              "epoch e on rank r shuffles and samples from one seeded by (train.seed, 4, e, r)")


def default_paths(config, data=None, out=None) -> tuple[list[Path], Path]:
    """Training-set files (default ``<output.directory>/train.h5``) and model file (default
    ``<output.directory>/model.pt``)."""
    directory = Path(config.output.directory)
    paths = [Path(p) for p in (data or [directory / "train.h5"])]
    return paths, Path(out or directory / "model.pt")


def checkpoint_path(out) -> Path:
    """The checkpoint written next to the model: ``<out>.ckpt``."""
    return Path(f"{out}.ckpt")


def check_inputs(paths) -> None:
    """Raise InputError (with the fix) for a training-set path that is not a file."""
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"training set {str(path)!r} does not exist. Fix: run 'hpcdens "
                             f"generate CONFIG' first, or point --data at an existing file")


def check_outputs(out: Path, resume: bool, overwrite: bool) -> None:
    """Raise InputError (with the fix) when the model or checkpoint paths do not fit the flags."""
    ckpt = checkpoint_path(out)
    output_file(out, overwrite, "model")
    if resume and not ckpt.is_file():
        raise InputError(f"--resume: no checkpoint {str(ckpt)!r} to continue from. Fix: run "
                         "without --resume to start training")
    if ckpt.exists() and not (resume or overwrite):
        raise InputError(f"checkpoint {str(ckpt)!r} of an earlier run exists. Fix: pass --resume "
                         "to continue it, or --overwrite to start again")


def run_train(config, data=None, out=None, comm=None, resume: bool = False,
              overwrite: bool = False, progress: bool = True,
              stop_after: int | None = None) -> dict:
    """Train on the files ``data`` (default ``<output.directory>/train.h5``) and write the model
    to ``out`` (default ``<output.directory>/model.pt``), on every rank of ``comm`` (default
    ``MPI.COMM_SELF``). ``stop_after`` ends this call after that many epochs, with the checkpoint
    written and no model (what a killed run leaves; ``resume=True`` continues). Returns the
    summary on every rank."""
    if comm is None:
        comm = self_comm()
    t0 = time.perf_counter()
    paths, out = default_paths(config, data, out)
    check_inputs(paths)
    on_root(comm, check_outputs, out, resume, overwrite)
    dataset = prepare_data(config, paths, comm)
    if comm.rank == 0:
        _log_data(config, dataset, comm.size)
    model = new_model(config, dataset, comm)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
    fp = fingerprint(config, dataset, model)
    ckpt = checkpoint_path(out)
    state = restore(ckpt, fp, model, optimizer, comm) if resume else TrainState()
    if comm.rank == 0 and not resume:
        ckpt.unlink(missing_ok=True)

    def on_epoch(st, net, opt):  # rank 0 writes; a failure stops every rank (no hang)
        on_root(comm, write_checkpoint, ckpt, st, net, opt, fp, config, comm.size)

    n_before = len(state.history)
    fit(model, optimizer, dataset, config, comm, state, on_epoch, progress, stop_after)
    summary = _summary(config, dataset, state, comm.size, out, n_before)
    summary["wall_time_s"] = time.perf_counter() - t0
    if summary["finished"]:  # rank 0 writes; a failure stops every rank (no hang)
        def save():
            save_model(out, model, model_record(config, dataset, state, summary))
            log.info("model -> %s", out)
        on_root(comm, save)
        dft = dft_settings(dataset.labelled, dataset.train_idx)
        if wants_charge_model(config, dft, warn=comm.rank == 0):      # docs/charges.md
            from ..charge_correction import run_fit_charges

            fitted = run_fit_charges(comm, out, data=paths,
                                     shells_bohr=config.train.charge_shells_bohr)
            summary["charge_model"] = {k: fitted[k] for k in ("cv_rmse", "n_atoms")}
            if comm.rank == 0:
                log.info("charge model: %d atoms, cross-validated error %.4f e -> %s",
                         fitted["n_atoms"], fitted["cv_rmse"], out)
    return summary


def _log_data(config, d: Dataset, ranks: int):
    tc = config.train
    drawn = (f"{tc.density_fraction:g} of them drawn by SAD density"
             if tc.density_fraction else "uniform")
    log.info("%d snapshots: %d training (%d points, %s), %d validation (%d points); M = %d, "
             "species %s, target %s, KL / %d (kl_divisor %s), %d ranks", len(d.labelled),
             len(d.train_idx), d.train.n_global, drawn, len(d.val_idx),
             d.val.n_global if d.val else 0, d.features["M"], d.features["species"],
             config.model.target, d.n_kl, tc.kl_divisor, ranks)
    wanted = n_validation(len(d.labelled), config.train.validation_fraction)
    if len(d.val_idx) < wanted:
        log.warning("%d of the %d validation snapshots asked for: holding out more would remove "
                    "the last training snapshot of a composition or a species", len(d.val_idx),
                    wanted)
    if not d.val_idx:
        log.warning("no validation snapshots (%d snapshot(s), validation_fraction %g): early "
                    "stopping uses the training loss", len(d.labelled),
                    config.train.validation_fraction)


# ---------------------------------------------------------------------------- checkpoints ---

#: [train] settings a resumed run may change; every other one is in the checkpoint's fingerprint.
RESUMABLE_TRAIN_SETTINGS = ("epochs", "patience", "charge_model",   # the last two: fitted after
                            "charge_shells_bohr")


def wants_charge_model(config, dft: dict | None, warn: bool = True) -> bool:
    """``[train] charge_model`` resolved (docs/charges.md): unset, on (rho and delta_rho) when
    the training snapshots record their DFT settings ``dft`` (the pro-atoms come from them);
    ``warn``: say so when they do not (rank 0 only under MPI)."""
    if config.train.charge_model is not None:
        return config.train.charge_model
    if dft is None:
        if warn:
            log.warning("no charge model: the training snapshots record no DFT settings, so "
                        "the pro-atoms are unknown (docs/charges.md)")
        return False
    return True


def fingerprint(config, d: Dataset, model) -> dict:
    """What must not change between a checkpoint and its resumption: the data, features, target,
    architecture and every [train] setting but :data:`RESUMABLE_TRAIN_SETTINGS`."""
    train = {k: v for k, v in dataclasses.asdict(config.train).items()
             if k not in RESUMABLE_TRAIN_SETTINGS}
    return json.loads(json.dumps({
        "data_sha256": d.data_sha256, "features": d.features, "target": config.model.target,
        "architecture": model.architecture(),
        "train": without_later_defaults("train", train)}))


def write_checkpoint(path: Path, state: TrainState, model, optimizer, fp: dict, config,
                     ranks: int) -> None:
    """Model, optimizer, epoch, best weights and metrics, early-stopping counter, history and the
    random-stream description, to a temporary name, then renamed."""
    payload = {"format": CKPT_FORMAT, "version": CKPT_VERSION, "fingerprint": fp,
               "epoch": state.epoch, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(),
               "best": {"loss": state.best_loss, "epoch": state.best_epoch,
                        "metrics": state.best_metrics, "state": state.best_state},
               "bad_epochs": state.bad_epochs, "history": state.history,
               "lr_halvings": state.lr_halvings,
               "rng": {"scheme": RNG_SCHEME, "seed": config.train.seed, "next_epoch": state.epoch},
               "ranks": ranks, "hpcdens_version": __version__}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, fp: dict) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}). Fix: "
                         "delete it and train with --overwrite") from err
    if not isinstance(payload, dict) or payload.get("format") != CKPT_FORMAT:
        raise InputError(f"{str(path)!r} is not an hpcdens training checkpoint. Fix: delete it "
                         "and train with --overwrite")
    now, then = _flat(fp), _flat(payload.get("fingerprint", {}))
    changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    if changed:
        raise InputError(f"checkpoint {str(path)!r} was made with other data or settings "
                         f"({', '.join(changed)}). Fix: restore them, or train from scratch with "
                         "--overwrite instead of --resume")
    return payload


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def restore(path: Path, fp: dict, model, optimizer, comm) -> TrainState:
    """Load a checkpoint (read on rank 0, broadcast) into ``model`` and ``optimizer``."""
    payload = on_root(comm, _load_checkpoint, path, fp)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    best = payload["best"]
    if comm.rank == 0:
        log.info("resuming %s after epoch %d (written on %d ranks, now %d)", path,
                 payload["epoch"], payload["ranks"], comm.size)
    return TrainState(epoch=payload["epoch"], best_loss=best["loss"], best_epoch=best["epoch"],
                      best_metrics=best["metrics"], best_state=best["state"],
                      bad_epochs=payload["bad_epochs"], history=list(payload["history"]),
                      lr_halvings=int(payload.get("lr_halvings", 0)))


# ------------------------------------------------------------------------------- results ---

def _summary(config, d: Dataset, state: TrainState, ranks: int, out: Path, n_before: int) -> dict:
    tc, now = config.train, state.history[n_before:]
    return {"out": str(out), "checkpoint": str(checkpoint_path(out)),
            "finished": state.done(tc.epochs, tc.patience), "epochs_run": state.epoch,
            "best_epoch": state.best_epoch, "rollbacks": rollbacks(state),
            "stopped_early": state.bad_epochs >= tc.patience,
            "early_stopping_on": "validation loss" if d.val_idx else "training loss",
            "best": dict(state.best_metrics), "n_train_points": d.train.n_global,
            "n_validation_points": d.val.n_global if d.val else 0,
            "n_train_snapshots": len(d.train_idx), "n_validation_snapshots": len(d.val_idx),
            "ranks": ranks, "history": state.history,
            "epoch_time_s": (sum(h["train_s"] + h["val_s"] for h in now) / len(now)
                             if now else 0.0)}


def model_record(config, d: Dataset, state: TrainState, summary: dict) -> ModelRecord:
    """The record stored with the model: what a prediction needs (M, species, descriptor
    version, target, N_s and seed, and when the training snapshots determine them the dft
    settings and the valence table), the full feature spec, provenance (data hash and files,
    split), training summary and validation metrics, the config."""
    def keys(indices):
        return [{"file": d.labelled[i].file_index, "key": d.labelled[i].key} for i in indices]

    training = {k: summary[k] for k in ("epochs_run", "best_epoch", "rollbacks", "stopped_early",
                                        "early_stopping_on", "n_train_points",
                                        "n_validation_points", "ranks", "wall_time_s")}
    training.update(data_files=d.files, data_sha256=d.data_sha256, data_hash_scheme=HASH_SCHEME,
                    train_snapshots=keys(d.train_idx), validation_snapshots=keys(d.val_idx),
                    validation=dict(state.best_metrics), seed=config.train.seed,
                    history=state.history)
    valence = valence_electrons(d.labelled, d.train_idx)
    dft = dft_settings(d.labelled, d.train_idx)
    return ModelRecord(
        n_neighbors=d.features["M"], species=tuple(d.features["species"]),
        target=config.model.target, n_samples=config.model.n_samples,
        sample_seed=config.model.seed, descriptor_version=d.features["descriptor_version"],
        dft=dft, valence_electrons=None if valence is None else {int(z): n for z, n in
                                                                valence.items()},
        features=d.features, training=training, config=config_record(config),
        hpcdens_version=__version__,
        sad_radial=sad_radial(config.model.target, dft, d.features["species"]))


def sad_radial(target: str, dft: dict | None, species) -> dict | None:
    """A delta_rho model's radial atomic densities (``ModelRecord.sad_radial``) from the DFT
    backend and settings of its labels: the tables its targets' rho_SAD was built from. None for
    rho models, for labels without one shared dft record, and when the backend cannot give them
    on this machine (a warning; predict then asks the backend, as for older models)."""
    from ase.data import chemical_symbols

    from ..dft import get_backend, settings_from_record

    if target != "delta_rho" or not dft:
        return None
    settings = settings_from_record(dft)
    try:
        radial = get_backend(settings.backend).radial_densities(
            [chemical_symbols[int(z)] for z in species], settings)
    except HpcdensError as err:
        log.warning("the model does not store its SAD tables (%s backend: %s); predict will "
                    "compute them with that backend", settings.backend, err)
        return None
    return {el: rad.to_table() for el, rad in sorted(radial.items())}


def config_record(config) -> dict:
    """The input file's text and the sections that shaped the model."""
    text = config.source.read_text() if config.source and config.source.is_file() else ""
    return {"name": config.name, "toml": text,
            **{s: dataclasses.asdict(getattr(config, s))
               for s in ("descriptors", "model", "train")}}


# ---------------------------------------------------------------------------- command line ---





