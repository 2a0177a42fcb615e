"""The MPI prediction: atoms + a loaded model -> density fields (``srun -n 4096 hpcdens predict``).

Two entry points share one driver:

* :func:`predict_atoms` (in memory): ASE Atoms and a :class:`~hpcdens.io.model.Predictor`
  (:func:`load_predictor`, loaded once) -> each rank's block of the fields, optionally also
  streamed into a prediction file; :func:`gather_fields` assembles the whole grid on rank 0 when a
  caller needs it (evaluate, against the DFT density);
* :func:`run_predict` (``hpcdens predict``): a model file and a structure file -> one prediction
  file; nothing is gathered and memory per rank is bounded by the chunk.

Flow on every rank of ``comm`` (docs/commands/predict.md):

1. rank 0 checks the inputs and broadcasts a :class:`~hpcdens.parallel.inputs.PredictPlan`, or
   the error that every rank then raises together; the model is read on rank 0, which draws the
   N_s weight samples once from the model's seed, and broadcast;
2. :class:`GridDecomposition` gives this rank one block of the global grid (uneven blocks and
   empty blocks allowed);
3. the block's halo atoms (periodic images) feed a halo-mode neighbour search whose radius is
   verified per point (:class:`~hpcdens.parallel.halo.BlockHalo`); descriptors and the network
   stream through chunks of at most ``chunk_points`` points (:mod:`hpcdens.parallel.block`);
4. with a file, the datasets are created collectively (global shape) before the prediction, and
   each chunk's fields go into their hyperslab as soon as the chunk is predicted (independent
   MPI-IO writes: chunk counts differ between ranks);
5. the integral of rho is an exact (order-independent) sum, accumulated per chunk and combined
   over all ranks, so rho_normalised (Eq. 9) is the same for any rank count; it is written in a
   second streamed pass that reads each rank's rho back chunk by chunk;
6. the file is completed collectively and renamed into place with ``complete = True``.

Errors inside a rank's local work are collected with one ``allgather`` before the first
collective that follows (:func:`~hpcdens.parallel.collective.on_every_rank`), so every rank
raises and none hangs.
"""

from __future__ import annotations

import json
import logging
import resource
from contextlib import nullcontext
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .. import __version__
from ..descriptors import DESCRIPTOR_VERSION
from ..errors import HpcdensError, InputError
from ..grid import DEFAULT_CHUNK_POINTS
from ..io.files import output_file
from ..io.model import Predictor, read_predictor
from ..io.prediction import FIELD_UNITS, FORMAT, FORMAT_VERSION
from .block import (
    COMPUTE_PHASES,
    DEFAULT_PRECISION,
    PHASES,
    PRECISIONS,
    BlockFields,
    PhaseTimer,
    block_field_names,
    has_epistemic,
    predict_chunks,
    reach_assessed,
    sample_field_names,
)
from .charge_pass import write_corrected
from .collective import (
    allreduce,
    allreduce_array,
    allreduce_exact_partials,
    exact_partial_sum,
    on_every_rank,
    on_root,
)
from .decomposition import BlockLayout, GridDecomposition, chunk_boxes
from .inputs import (
    PredictPlan,
    chunk_memory_error,
    plan_for_atoms,
    plan_summary,
    prepare_plan,
)
from .writer import ParallelH5Writer, require_parallel_hdf5

log = logging.getLogger("hpcdens.predict")


@dataclass(frozen=True)
class Prediction:
    """A prediction held by one rank: the ``plan`` (atoms, grid, N_e), this rank's block of the
    grid (``layout``), its ``fields`` (e/Bohr^3, each of shape ``layout.local_shape``: ``rho``,
    ``epistemic_std``, ``aleatoric_std``, and ``rho_sad`` for delta_rho models; None when not
    kept) and the ``summary`` (the same on every rank: ``integral_rho_raw``, timings, halo
    statistics). rho_normalised = rho * n_electrons / integral_rho_raw (Eq. 9)."""

    plan: PredictPlan
    layout: BlockLayout
    fields: dict | None
    summary: dict


def load_predictor(comm, path) -> Predictor:
    """The model of ``path`` on every rank of ``comm``: read and checked on rank 0, which draws
    the N_s weight samples once (so they are the same on every rank whatever the node), then
    broadcast. Collective; a bad model raises the same InputError on every rank."""
    return on_root(comm, read_predictor, path)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB; Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def available_memory_bytes() -> int | None:
    """MemAvailable of this node (/proc/meminfo, bytes), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_chunk_memory(comm, plan: PredictPlan, block_points: int) -> None:
    """InputError on every rank when a chunk would not fit in this rank's share of its node's
    available memory (:func:`hpcdens.parallel.inputs.chunk_memory_error`; collective)."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_on_node = node.Get_size()
    node.Free()

    def check():
        saved = plan.record.n_samples if plan.save_samples else 0
        error = chunk_memory_error(plan.chunk_points, block_points, 5 * plan.record.n_neighbors,
                                   saved, available_memory_bytes(), ranks_on_node)
        if error:
            raise InputError(error)

    on_every_rank(comm, check)


def _halo_stats(comm, block) -> dict:
    """Halo statistics of the blocks, and the points flagged out of reach (calibrated models)."""
    growths = comm.allgather(block.halo_growths)
    return {"out_of_reach_points": int(comm.allreduce(block.flagged)),
            "halo_growths": int(sum(growths)),
            "halo_blocks_grown": int(sum(g > 0 for g in growths)),
            "halo_radius_max_bohr": allreduce(comm, block.halo_radius, "max"),
            "halo_atoms_max": allreduce(comm, block.halo_atoms, "max")}


def _root_attrs(plan: PredictPlan, decomp, extra: dict) -> dict:
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "hpcdens_version": __version__,
             "model_sha256": plan.model_sha256, "model_path": plan.model_path,
             "target": plan.record.target, "n_neighbors": plan.record.n_neighbors,
             "n_samples": plan.record.n_samples, "sample_seed": plan.record.sample_seed,
             "sample_mode": plan.sample_mode,
             "descriptor_version": DESCRIPTOR_VERSION,
             "n_electrons": plan.n_electrons, "valence_source": plan.valence_source,
             "valence_electrons_json": json.dumps({str(z): n for z, n in plan.valence.items()}),
             "grid_shape": np.array(plan.grid_shape), "voxel_volume_bohr3":
             plan.grid.voxel_volume_bohr3, "n_ranks": decomp.comm.size,
             "process_grid": np.array(decomp.dims),
             "structure_json": json.dumps(plan.structure_info)}
    if plan.sad:
        attrs["sad_settings_json"] = json.dumps(plan.sad["settings"])
        attrs["sad_source"] = plan.sad["source"]
    attrs["uncertainty_calibration_json"] = json.dumps(plan.record.calibration or "uncalibrated")
    attrs.update(extra)
    return attrs


def field_names(plan: PredictPlan) -> list[str]:
    """The datasets of a prediction file, in the order they are created."""
    return ["rho", "rho_normalised"] + (["epistemic_std"] if has_epistemic(plan) else []) \
        + ["aleatoric_std"] + (["rho_sad"] if plan.sad else []) \
        + (["out_of_reach"] if reach_assessed(plan) else []) \
        + (sample_field_names(plan.record.n_samples) if plan.save_samples else [])


def stream_predictions(comm, plan: PredictPlan, decomp, writer, net, samples, timer: PhaseTimer,
                       dtype: str = DEFAULT_PRECISION, kept: BlockFields | None = None):
    """First pass (collective at its end): predict this rank's block chunk by chunk, write each
    chunk's fields into its hyperslab at once (independent MPI-IO writes; no ``writer``: none),
    keep them in ``kept`` when given, and add its rho to the exact partial sum of Eq. 9. Returns
    the block's stream (halo statistics) and this rank's exact partial sum (a Fraction); a
    failure on any rank is raised on every rank. ``dtype``: the precision of the network pass."""
    on_file = [name for name in field_names(plan) if name != "rho_normalised"]

    def work():
        stream = predict_chunks(plan, decomp, net, samples, timer, dtype)
        partial = Fraction(0)
        for lo, hi, fields in stream:
            with timer("reduce"):
                partial += exact_partial_sum(fields["rho"])
            if kept is not None:
                kept.add(fields)
            if writer is not None:
                with timer("write"):
                    for name in on_file:
                        writer.write_chunk(name, lo, hi, fields[name])
        return stream, partial

    return on_every_rank(comm, work)


def stream_normalised(comm, plan: PredictPlan, decomp, writer: ParallelH5Writer,
                      factor: float) -> None:
    """Second pass: read this rank's rho back chunk by chunk and write rho_normalised =
    rho * factor into the same hyperslab (independent I/O; failures raised on every rank)."""
    def work():
        for _, (lo, hi) in chunk_boxes(decomp.local_start, decomp.local_stop, plan.chunk_points):
            writer.write_chunk("rho_normalised", lo, hi, writer.read_chunk("rho", lo, hi) * factor)

    on_every_rank(comm, work)


def _timings(comm, timer: PhaseTimer) -> tuple[dict, float, float]:
    """Phase timings (max over ranks), peak RSS (max, MB) and compute CPU seconds (sum)."""
    seconds = allreduce_array(comm, np.array([timer.seconds[p] for p in PHASES]), "max")
    rss = allreduce(comm, peak_rss_mb(), "max")
    cpu = allreduce(comm, sum(timer.cpu[p] for p in COMPUTE_PHASES), "sum")
    return dict(zip(PHASES, (float(s) for s in seconds))), rss, cpu


def finish_prediction(comm, plan: PredictPlan, writer: ParallelH5Writer, attrs: dict,
                      timer: PhaseTimer):
    """Write the atoms and the attributes; the timings (max over ranks, write included) are
    stored just before ``complete``; close and rename (collective)."""
    with timer("write"):
        writer.write_root("atoms/numbers", plan.numbers.astype(np.int32))
        writer.write_root("atoms/positions_bohr", plan.positions_bohr)
        writer.write_root("atoms/cell_bohr", plan.cell_bohr)
        writer.write_root("atoms/pbc", plan.pbc)
    timings, rss, cpu = _timings(comm, timer)
    writer.set_attrs({**attrs, **{f"timing_{p}_s": s for p, s in timings.items()},
                      "timings_json": json.dumps(timings), "peak_rss_mb_max": rss,
                      "compute_cpu_s_sum": cpu})
    writer.finish()
    return timings, rss, cpu


def _execute(comm, plan: PredictPlan, predictor: Predictor, timer: PhaseTimer, precision: str,
             dims, keep: bool) -> Prediction:
    """The prediction of ``plan`` on every rank: into ``plan.out`` when set, kept in memory with
    ``keep``."""
    opened = ParallelH5Writer(plan.out, comm) if plan.out is not None else nullcontext()
    with GridDecomposition(comm, plan.grid_shape, dims) as decomp, opened as writer:
        check_chunk_memory(comm, plan, decomp.local_size)
        if writer is not None:
            with timer("write"):
                for name in field_names(plan):
                    writer.create(name, plan.grid_shape, "f8",
                                  {"units": FIELD_UNITS.get(name, "e/Bohr^3")})
        kept = BlockFields(decomp, block_field_names(plan)) if keep else None
        stream, partial = stream_predictions(comm, plan, decomp, writer, predictor.net,
                                             predictor.samples, timer, precision, kept)
        with timer("reduce"):
            raw = allreduce_exact_partials(comm, partial) * plan.grid.voxel_volume_bohr3
            if not raw > 0:
                err = HpcdensError(f"the predicted density integrates to {raw:.6g} e, not > 0; "
                                   "cannot normalise to N_e (is the model trained?)")
                err.collective = True  # the same on every rank
                raise err
            halo = _halo_stats(comm, stream)
            halo["out_of_reach_fraction"] = (halo["out_of_reach_points"] / plan.grid.size
                                             if reach_assessed(plan) else -1.0)
        corrected = None
        if writer is None:
            timings, rss, cpu = _timings(comm, timer)
        else:
            if plan.charge_correction:
                with timer("charges"):
                    corrected = write_corrected(comm, plan, decomp, writer, plan.n_electrons / raw)
            else:
                with timer("write"):
                    stream_normalised(comm, plan, decomp, writer, plan.n_electrons / raw)
            attrs = _root_attrs(plan, decomp, {"integral_rho_raw": raw, "precision": precision,
                                               "charge_corrected": corrected is not None,
                                               "charge_correction_json": json.dumps(corrected),
                                               **halo})
            timings, rss, cpu = finish_prediction(comm, plan, writer, attrs, timer)
        layout = BlockLayout(decomp.shape, decomp.dims, decomp.coords)
    summary = {"out": plan.out, "grid_shape": plan.grid_shape, "n_points": plan.grid.size,
               "n_atoms": len(plan.numbers), "n_ranks": comm.size, "process_grid": layout.dims,
               "n_electrons": plan.n_electrons, "integral_rho_raw": raw,
               "valence_source": plan.valence_source, "timings": timings,
               "peak_rss_mb_max": rss, "compute_cpu_s_sum": cpu,
               "uncertainty_calibration": plan.record.calibration,
               "n_samples": plan.record.n_samples, "sample_mode": plan.sample_mode,
               "charge_correction": corrected, "charge_model": plan.record.charges is not None,
               **halo}
    return Prediction(plan, layout, kept.arrays() if kept is not None else None, summary)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} unknown. Fix: one of {', '.join(PRECISIONS)}")


def _plan_atoms(atoms, predictor: Predictor, out, overwrite: bool, kwargs: dict) -> PredictPlan:
    """Rank 0: the output path (when given) and :func:`plan_for_atoms`."""
    if out is not None:
        out = output_file(out, overwrite)
    return plan_for_atoms(atoms, predictor, out=out, **kwargs)


def predict_atoms(comm, atoms, predictor: Predictor, *, spacing_bohr=None, shape=None,
                  valence=None, chunk_points: int = DEFAULT_CHUNK_POINTS,
                  precision: str = DEFAULT_PRECISION, out=None, overwrite: bool = False,
                  keep: bool = True, structure_info: dict | None = None,
                  dims=None, keep_samples: bool = False,
                  charge_correction: bool = False) -> Prediction:
    """Predict the density of ``atoms`` with a loaded model on all ranks of ``comm`` (the
    in-memory entry point: no input files).

    atoms : ASE Atoms (Angstrom), needed on rank 0 only (the others may pass None); checked there
    predictor : from :func:`load_predictor` (load it once for many structures)
    spacing_bohr, shape, valence, chunk_points, precision, dims : as for :func:`run_predict`
    out : also write the prediction file ``out`` (the format of ``hpcdens predict``), streamed
        as the chunks are predicted; ``structure_info`` goes into its ``structure_json``
    keep : keep this rank's block of the fields in memory (``Prediction.fields``; bring the
        whole grid to rank 0 with :func:`gather_fields`)
    keep_samples : with ``keep``, also keep the density of each of the N_s weight samples
        (fields ``rho_sample_<j>``, raw, not renormalised, never written to ``out``)
    charge_correction : with ``out`` and a model with a charge model (``hpcdens charges``),
        write its ``rho_normalised`` corrected to the model's atomic charges (docs/charges.md);
        the kept fields are never corrected

    Returns this rank's :class:`Prediction`. Raises InputError (all ranks) for bad inputs.
    """
    _check_precision(precision)
    timer = PhaseTimer()
    if out is not None:
        require_parallel_hdf5()
    with timer("setup"):
        plan = on_root(comm, _plan_atoms, atoms, predictor, out, overwrite,
                       {"spacing_bohr": spacing_bohr, "shape": shape, "valence": valence,
                        "chunk_points": chunk_points, "structure_info": structure_info,
                        "keep_samples": bool(keep_samples and keep)})
    plan = _with_correction(plan, charge_correction)
    return _execute(comm, plan, predictor, timer, precision, dims, keep)


def _with_correction(plan: PredictPlan, wanted: bool) -> PredictPlan:
    """The plan with the charge correction on where it is ``wanted``, a file is written and the
    model has a charge model."""
    return replace(plan, charge_correction=bool(wanted and plan.out is not None
                                                and plan.record.charges))


def gather_fields(comm, prediction: Prediction, names=None, root: int = 0) -> dict | None:
    """The whole grid's fields ``names`` (default: all kept) on rank ``root``, assembled from
    every rank's block of an in-memory prediction; None on the other ranks (collective).

    Every rank sends its blocks to ``root`` in one pickled message each and ``root`` holds the
    whole grid: meant for small cells, such as evaluate's comparison with the DFT density of a
    test snapshot. Large grids go to a file (``out``), never through here."""
    names = list(prediction.fields) if names is None else list(names)
    layout = prediction.layout
    blocks = comm.gather((layout.local_slices(), {n: prediction.fields[n] for n in names}),
                         root=root)
    if comm.rank != root:
        return None
    whole = {name: np.empty(prediction.plan.grid_shape) for name in names}
    for box, fields in blocks:
        for name, values in fields.items():
            whole[name][box] = values
    return whole


def run_predict(comm, model, structure, out, *, spacing_bohr=None, shape=None, supercell=None,
                vacancies=0, seed=0, chunk_points=DEFAULT_CHUNK_POINTS, overwrite=False,
                valence=None, dims=None, precision: str = DEFAULT_PRECISION,
                samples=None, save_samples: bool = False,
                charge_correction: bool = True) -> dict:
    """Predict the density of ``structure`` with ``model`` on all ranks of ``comm`` into ``out``.

    Parameters are those of ``hpcdens predict`` (docs/commands/predict.md); ``dims`` forces a
    process grid; ``precision`` ("float32" or "float64") is that of the network pass (moments
    are accumulated in float64 either way; docs/model.md); ``samples``: the fast-sample mode
    (:func:`hpcdens.io.model.with_samples`: None for all N_s, K, or "mean"); ``save_samples``:
    also write each weight sample's density (``rho_sample_<j>``, raw); ``charge_correction``:
    rho_normalised corrected to the atomic charges of a model that has a charge model
    (docs/charges.md; False: Eq. 9 alone). Returns the same summary dict on every rank.
    Raises InputError (all ranks) for bad inputs, ParallelIOError without parallel HDF5.

    Memory per rank is bounded by the chunk, not the block: each chunk is written as soon as it
    is predicted, and rho_normalised is written in a second streamed pass over the file.
    """
    _check_precision(precision)
    timer = PhaseTimer()
    require_parallel_hdf5()
    with timer("setup"):
        # every rank imports torch now, side by side; otherwise rank 0 imports it to read the
        # model and the others only to unpickle the broadcast model, one after the other
        from .. import bnn  # noqa: F401
        plan, predictor = on_root(comm, prepare_plan, model, structure, out,
                                  spacing_bohr=spacing_bohr, shape=shape, supercell=supercell,
                                  vacancies=vacancies, seed=seed, chunk_points=chunk_points,
                                  overwrite=overwrite, valence=valence, samples=samples)
        if comm.rank == 0:
            log.info("predict: %s on %d ranks", plan_summary(plan), comm.size)
        plan = _with_correction(replace(plan, save_samples=bool(save_samples)),
                                charge_correction)
    summary = _execute(comm, plan, predictor, timer, precision, dims, keep=False).summary
    if comm.rank == 0:
        log.info("predict: wrote %s (%s points, %d ranks, grid %s); halo grew %d times in %d "
                 "blocks", plan.out, summary["n_points"], comm.size, summary["process_grid"],
                 summary["halo_growths"], summary["halo_blocks_grown"])
    return summary
