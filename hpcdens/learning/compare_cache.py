"""The evaluation cache of ``hpcdens learn-compare`` (:mod:`hpcdens.learning.compare`).

Each evaluated round's folder ``OUT/<name>/round_NN/`` holds ``evaluate.json`` and, written after
the evaluation finished, ``source.json`` (the model's and the test set's SHA-256, the DFT settings
of the energies, the element order): :func:`cache_hit` says whether a folder's evaluation is that
of a job. :func:`twin_key` and :func:`copy_evaluation` give a round whose model predicts exactly
as an evaluated one a copy of that evaluation; :func:`with_charge_model` gives a round's model a
charge model to evaluate with (``--charge-model``). Documentation: docs/commands/learn-compare.md.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..io.files import write_json

SOURCE = "source.json"
log = logging.getLogger("hpcdens.learn_compare")


def cache_hit(directory: Path, source: dict) -> bool:
    """Whether ``directory`` holds a finished evaluation (``evaluate.json`` with rows) whose
    ``source.json`` equals ``source`` in model and test-set SHA-256, DFT settings, elements and
    whether the densities were charge-corrected."""
    from ..evaluation import JSON_NAME as EVAL_JSON

    try:
        old = json.loads((directory / SOURCE).read_text())
        rows = json.loads((directory / EVAL_JSON).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    same = all(old.get(k) == source[k] for k in ("model_sha256", "testset_sha256", "dft",
                                                  "elements"))
    # whether the rows are of charge-corrected densities (before it was recorded: charge_model)
    charged = old.get("charge_corrected", old.get("charge_model", False)) == \
        source["charge_corrected"]
    return same and charged and isinstance(rows, list)


def fitted_copy(path: Path, model) -> bool:
    """Whether ``path`` holds ``model`` with a charge model fitted ('hpcdens charges' wrote it
    from that model): the same weights and training record, and a charge model."""
    from ..io.model import load_model, weights_sha256

    try:
        record = load_model(path)[1]
    except Exception:                # missing, half-written or not a model: fit it again
        return False
    return (record.charges is not None and weights_sha256(path) == weights_sha256(model)
            and record.training == load_model(model)[1].training)


def twin_key(job: dict) -> str:
    """What makes two rounds' evaluations equal: what the model predicts with
    (:func:`hpcdens.io.model.prediction_sha256`) and the DFT settings of the energies (the test
    set and the elements are the same for every job of a plan)."""
    return json.dumps([job["prediction_sha256"], job["source"]["dft"]], sort_keys=True)


def copy_evaluation(src, dst, source: dict) -> None:
    """Rank 0: the evaluation folder ``src`` of an equal model copied as ``dst`` (copied, not
    linked: a later evaluation into either folder rewrites its files in place), then ``dst``'s
    source.json."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(SOURCE))
    write_json(dst / SOURCE, source)


def check_fittable(jobs) -> None:
    """Rank 0, before any work: InputError for a round whose model has no charge model and no
    DFT record to fit one from (its pro-atoms unknown)."""
    from ..errors import InputError
    from ..io.model import load_model

    for job in jobs:
        record = load_model(job["model"])[1]
        if record.charges is None and record.dft is None:
            raise InputError(f"model {job['model']!r} has no charge model and records no DFT "
                             "settings to fit one from. Fix: leave out --charge-model, or that "
                             "learn directory")


def with_charge_model(comm, job: dict) -> dict:
    """The job with a model that has a charge model (collective): the round's own when it has
    one (``[train] charge_model = true``), else its copy ``OUT/<name>/round_NN.charges.pt``
    with one fitted on the round's training snapshots (:func:`hpcdens.charge_correction.
    run_fit_charges`, all ranks; kept and reused while the round's model is unchanged)."""
    from ..charge_correction import run_fit_charges
    from ..io.model import load_model, prediction_sha256
    from ..parallel.collective import on_root

    if on_root(comm, lambda: load_model(job["model"])[1].charges is not None):
        return job
    charged = Path(f"{job['out']}.charges.pt")
    if not on_root(comm, fitted_copy, charged, job["model"]):
        if comm.rank == 0:
            log.info("learn-compare: fitting the charge model of %s", job["model"])
        run_fit_charges(comm, job["model"], charged)
    return {**job, "evaluated_model": str(charged),
            "prediction_sha256": on_root(comm, prediction_sha256, charged)}


def make_folders(manifest_path: Path, manifest: dict, ours: bool, jobs) -> None:
    """OUT (the manifest's folder), its manifest and the folders of the rounds to evaluate
    (rank 0, after every check); ``ours``: OUT holds an earlier comparison."""
    out = manifest_path.parent
    out.mkdir(exist_ok=True)
    old = None
    if ours:
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = None
    if old and old.get("testset_sha256") != manifest["testset_sha256"]:
        log.info("learn-compare: %s was made with another test set; its rounds are evaluated "
                 "again", out)
    write_json(manifest_path, manifest)
    for job in jobs:
        if not job["cached"]:
            Path(job["out"]).parent.mkdir(exist_ok=True)
            (Path(job["out"]) / SOURCE).unlink(missing_ok=True)
