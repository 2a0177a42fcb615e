"""``hpcdens predict``: the MPI prediction driver (``srun -n 4096 hpcdens predict ...``).

Flow on every rank of ``comm`` (docs/commands/predict.md):

1. rank 0 checks the inputs and broadcasts a :class:`~hpcdens.parallel.inputs.PredictPlan`, or
   the error that every rank then raises together;
2. :class:`GridDecomposition` gives this rank one block of the global grid (uneven blocks and
   empty blocks allowed);
3. the block's halo atoms (periodic images) feed a halo-mode neighbour search whose radius is
   verified per point (:class:`~hpcdens.parallel.halo.BlockHalo`); descriptors and the network
   stream through chunks of at most ``chunk_points`` points, with the same N_s weight samples on
   every rank (drawn once on rank 0 from the model's seed and broadcast);
4. the datasets are created collectively (global shape) before the prediction, and each chunk's
   fields go into their hyperslab as soon as the chunk is predicted (independent MPI-IO writes:
   chunk counts differ between ranks), so memory per rank is bounded by the chunk, not the block;
5. the integral of rho is an exact (order-independent) sum, accumulated per chunk and combined
   over all ranks, so rho_normalised (Eq. 9) is the same for any rank count; it is written in a
   second streamed pass that reads each rank's rho back chunk by chunk;
6. the file is completed collectively and renamed into place with ``complete = True``.

Errors inside a rank's local work are collected with one ``allgather`` before the first
collective that follows, so every rank raises and none hangs.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import __version__
from ..descriptors import DEFAULT_CHUNK_POINTS, from_neighbors
from ..errors import HpcdensError, InputError
from ..io.prediction import FIELD_UNITS, FORMAT, FORMAT_VERSION
from .collective import allreduce_exact_partials, exact_partial_sum
from .decomposition import BlockLayout, GridDecomposition, chunk_boxes
from .halo import BlockHalo, PeriodicStructure, atoms_near_block
from .inputs import DESCRIPTOR_VERSION, PredictPlan, broadcast_plan, plan_summary
from .writer import ParallelH5Writer, require_parallel_hdf5

log = logging.getLogger("hpcdens.predict")

PHASES = ("setup", "halo", "descriptors", "network", "sad", "reduce", "write")
"""Timed phases; the file stores the maximum over ranks of each (seconds)."""


COMPUTE_PHASES = ("halo", "descriptors", "network", "sad")
"""Phases without communication: their CPU time summed over ranks measures the total work."""


class PhaseTimer:
    """Wall seconds per phase of this rank, and the CPU seconds of this process spent in the
    timed phases (``cpu``: the compute phases have no collectives, so no MPI busy-waiting)."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.cpu = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t0
            self.cpu[phase] += time.process_time() - c0

    def add(self, phase: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.seconds[phase] += seconds
        self.cpu[phase] += cpu_seconds


@dataclass
class BlockResult:
    """One rank's prediction: fields of shape ``layout.local_shape`` and halo statistics."""

    fields: dict
    halo_radius: float = 0.0
    halo_growths: int = 0
    halo_atoms: int = 0


def index_points(lo, hi) -> np.ndarray:
    """(n, 3) int64 grid indices of the box [lo, hi), C order."""
    axes = [np.arange(a, b) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


class BlockSad:
    """SAD density on points of one block: PySCF's lattice sum over the atoms near the block.

    Atoms with no image within the SAD cutoff of the block add nothing to its points, so summing
    over the sorted subset of the others gives the same numbers as the whole cell, in O(halo).
    """

    def __init__(self, plan: PredictPlan, structure: PeriodicStructure, layout: BlockLayout):
        from ase.data import chemical_symbols

        keep = atoms_near_block(structure, layout.shape, layout.local_start, layout.local_stop,
                                plan.sad["r_cut"] + 1e-6)
        self.cell = plan.cell_bohr
        self.positions = plan.positions_bohr[keep]
        self.symbols = [chemical_symbols[z] for z in plan.numbers[keep]]
        self.radial = plan.sad["radial"]

    def __call__(self, points_bohr) -> np.ndarray:
        from ..dft.pyscf_sad import superpose

        if not len(self.symbols):
            return np.zeros(len(points_bohr))
        return superpose(self.cell, self.positions, self.symbols, points_bohr, self.radial)


class BlockStream:
    """Stream the predictions of one block chunk by chunk (no MPI); iterate for
    ``(lo, hi, fields)``: the chunk's sub-box ``[lo, hi)`` (global indices) and its fields
    (1-D, C order of the sub-box): ``rho`` (the density: network mean, plus rho_SAD for
    delta_rho models), ``epistemic_std``, ``aleatoric_std`` and, for delta_rho models,
    ``rho_sad``; e/Bohr^3. Only one chunk is held at a time. After the iteration, ``halo_radius``,
    ``halo_growths`` and ``halo_atoms`` hold the halo statistics (zero for an empty block).
    ``dtype`` ("float64" or "float32") is the precision of the network pass (``bnn.predict``)."""

    def __init__(self, plan: PredictPlan, layout: BlockLayout, model, samples,
                 timer: PhaseTimer | None = None, dtype: str = "float64"):
        self.plan, self.layout, self.model, self.samples = plan, layout, model, samples
        self.dtype = dtype
        self.timer = timer or PhaseTimer()
        self.names = ["rho", "epistemic_std", "aleatoric_std"] + (["rho_sad"] if plan.sad else [])
        self.halo_radius, self.halo_growths, self.halo_atoms = 0.0, 0, 0

    def __iter__(self):
        from ..bnn import predict

        plan, layout, timer = self.plan, self.layout, self.timer
        if layout.local_size == 0:
            return
        grid = plan.grid
        structure = PeriodicStructure.from_arrays(plan.positions_bohr, plan.numbers,
                                                  plan.cell_bohr)
        with timer("halo"):
            halo = BlockHalo(structure, grid.shape, layout.local_start, layout.local_stop, plan.m)
            sad = BlockSad(plan, structure, layout) if plan.sad else None
        for _, (lo, hi) in chunk_boxes(layout.local_start, layout.local_stop, plan.chunk_points):
            points = grid.cartesian_points(lo, hi)
            built, t0, c0 = halo.build_seconds, time.perf_counter(), time.process_time()
            x = from_neighbors(halo.neighbors(index_points(lo, hi), points), plan.m)
            grown = halo.build_seconds - built
            timer.add("halo", grown, grown)
            timer.add("descriptors", time.perf_counter() - t0 - grown,
                      time.process_time() - c0 - grown)
            with timer("network"):
                out = predict(self.model, x, self.samples, dtype=self.dtype)
            del x
            fields = {"rho": out["mean"], "epistemic_std": np.sqrt(out["epistemic_var"]),
                      "aleatoric_std": np.sqrt(out["aleatoric_var"])}
            if sad is not None:
                with timer("sad"):
                    fields["rho_sad"] = sad(points)
                fields["rho"] = fields["rho"] + fields["rho_sad"]
            self.halo_radius, self.halo_growths, self.halo_atoms = \
                halo.radius, halo.growths, halo.n_atoms
            yield lo, hi, fields


def predict_chunks(plan: PredictPlan, layout: BlockLayout, model, samples,
                   timer: PhaseTimer | None = None, dtype: str = "float64") -> BlockStream:
    """The chunk stream of one block (:class:`BlockStream`; no MPI)."""
    return BlockStream(plan, layout, model, samples, timer, dtype)


def predict_block(plan: PredictPlan, layout: BlockLayout, model, samples,
                  timer: PhaseTimer | None = None, dtype: str = "float64") -> BlockResult:
    """Predict the fields of one block into memory (no MPI). Empty blocks return empty arrays.

    The same numbers as :func:`predict_chunks`, gathered into arrays of ``layout.local_shape``
    (the whole block in memory: for tests and small blocks; ``run_predict`` streams instead).
    """
    stream = predict_chunks(plan, layout, model, samples, timer, dtype)
    flat = {name: np.zeros(layout.local_size) for name in stream.names}
    offset = 0
    for _, _, fields in stream:
        count = len(fields["rho"])
        for name, values in fields.items():
            flat[name][offset:offset + count] = values
        offset += count
    return BlockResult({k: v.reshape(layout.local_shape) for k, v in flat.items()},
                       stream.halo_radius, stream.halo_growths, stream.halo_atoms)


def run_collectively(comm, work):
    """Run ``work()`` on every rank; if it fails anywhere, raise on every rank (one allgather).

    InputError stays InputError; anything else becomes HpcdensError naming the rank."""
    failure, value, cause = None, None, None
    try:
        value = work()
    except Exception as err:  # reported to all ranks below, never swallowed
        failure = ("input" if isinstance(err, InputError) else "failed",
                   f"rank {comm.rank}: {type(err).__name__}: {err}")
        cause = err
    failures = [f for f in comm.allgather(failure) if f]
    if failures:
        kind = InputError if all(k == "input" for k, _ in failures) else HpcdensError
        err = kind("; ".join(msg for _, msg in failures[:4])
                   + (f" (and {len(failures) - 4} more ranks)" if len(failures) > 4 else ""))
        err.collective = True  # raised on every rank: an open writer closes cleanly everywhere
        raise err from cause
    return value


def load_network(comm, plan: PredictPlan):
    """The model on every rank, and the N_s weight samples drawn once on rank 0 and broadcast
    (so they are the same on every rank whatever the node). Collective; fails on all ranks."""
    from ..bnn import load_model

    def load():
        model, _ = load_model(plan.model_path)
        draws = model.draw_weight_samples(plan.n_samples, plan.sample_seed) \
            if comm.rank == 0 else None
        return model, draws

    model, samples = run_collectively(comm, load)
    return model, comm.bcast(samples, root=0)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB; Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _halo_stats(comm, block) -> dict:
    from mpi4py import MPI

    growths = comm.allgather(block.halo_growths)
    return {"halo_growths": int(sum(growths)), "halo_blocks_grown": int(sum(g > 0 for g in growths)),
            "halo_radius_max_bohr": comm.allreduce(block.halo_radius, op=MPI.MAX),
            "halo_atoms_max": comm.allreduce(block.halo_atoms, op=MPI.MAX)}


def _root_attrs(plan: PredictPlan, decomp, extra: dict) -> dict:
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "hpcdens_version": __version__,
             "model_sha256": plan.model_sha256, "model_path": plan.model_path,
             "target": plan.target, "n_neighbors": plan.m, "n_samples": plan.n_samples,
             "sample_seed": plan.sample_seed, "descriptor_version": DESCRIPTOR_VERSION,
             "n_electrons": plan.n_electrons, "valence_source": plan.valence_source,
             "valence_electrons_json": json.dumps({str(z): n for z, n in plan.valence.items()}),
             "grid_shape": np.array(plan.grid_shape), "voxel_volume_bohr3":
             plan.grid.voxel_volume_bohr3, "n_ranks": decomp.comm.size,
             "process_grid": np.array(decomp.dims),
             "structure_json": json.dumps(plan.structure_info)}
    if plan.sad:
        attrs["sad_settings_json"] = json.dumps(plan.sad["settings"])
    attrs.update(extra)
    return attrs


def field_names(plan: PredictPlan) -> list[str]:
    """The datasets of a prediction file, in the order they are created."""
    return ["rho", "rho_normalised", "epistemic_std", "aleatoric_std"] \
        + (["rho_sad"] if plan.sad else [])


def stream_predictions(comm, plan: PredictPlan, decomp, writer: ParallelH5Writer, net, samples,
                       timer: PhaseTimer, dtype: str = "float32"):
    """First pass (collective at its end): predict this rank's block chunk by chunk, write each
    chunk's fields into its hyperslab at once (independent MPI-IO writes) and add its rho to the
    exact partial sum of Eq. 9. Returns the block's stream (halo statistics) and this rank's
    exact partial sum (a Fraction); a failure on any rank is raised on every rank. ``dtype``: the
    precision of the network pass (``bnn.predict``)."""
    def work():
        stream = predict_chunks(plan, decomp, net, samples, timer, dtype)
        partial = Fraction(0)
        for lo, hi, fields in stream:
            with timer("reduce"):
                partial += exact_partial_sum(fields["rho"])
            with timer("write"):
                for name, values in fields.items():
                    writer.write_chunk(name, lo, hi, values)
        return stream, partial

    return run_collectively(comm, work)


def stream_normalised(comm, plan: PredictPlan, decomp, writer: ParallelH5Writer,
                      factor: float) -> None:
    """Second pass: read this rank's rho back chunk by chunk and write rho_normalised =
    rho * factor into the same hyperslab (independent I/O; failures raised on every rank)."""
    def work():
        for _, (lo, hi) in chunk_boxes(decomp.local_start, decomp.local_stop, plan.chunk_points):
            writer.write_chunk("rho_normalised", lo, hi, writer.read_chunk("rho", lo, hi) * factor)

    run_collectively(comm, work)


def finish_prediction(comm, plan: PredictPlan, writer: ParallelH5Writer, attrs: dict,
                      timer: PhaseTimer):
    """Write the atoms and the attributes; the timings (max over ranks, write included) are
    stored just before ``complete``; close and rename (collective)."""
    from mpi4py import MPI

    with timer("write"):
        writer.write_root("atoms/numbers", plan.numbers.astype(np.int32))
        writer.write_root("atoms/positions_bohr", plan.positions_bohr)
        writer.write_root("atoms/cell_bohr", plan.cell_bohr)
        writer.write_root("atoms/pbc", plan.pbc)
    seconds = np.array([timer.seconds[p] for p in PHASES])
    comm.Allreduce(MPI.IN_PLACE, seconds, op=MPI.MAX)
    timings = dict(zip(PHASES, (float(s) for s in seconds)))
    rss = comm.allreduce(peak_rss_mb(), op=MPI.MAX)
    cpu = comm.allreduce(sum(timer.cpu[p] for p in COMPUTE_PHASES), op=MPI.SUM)
    writer.set_attrs({**attrs, **{f"timing_{p}_s": s for p, s in timings.items()},
                      "timings_json": json.dumps(timings), "peak_rss_mb_max": rss,
                      "compute_cpu_s_sum": cpu})
    writer.finish()
    return timings, rss, cpu


def run_predict(comm, model, structure, out, *, spacing_bohr=None, shape=None, supercell=None,
                vacancies=0, seed=0, chunk_points=DEFAULT_CHUNK_POINTS, overwrite=False,
                valence=None, dims=None, precision: str = "float32") -> dict:
    """Predict the density of ``structure`` with ``model`` on all ranks of ``comm`` into ``out``.

    Parameters are those of ``hpcdens predict`` (docs/commands/predict.md); ``dims`` forces a
    process grid; ``precision`` ("float32" or "float64") is that of the network pass (moments
    are accumulated in float64 either way; docs/model.md). Returns the same summary dict on every
    rank. Raises InputError (all ranks)
    for bad inputs, ParallelIOError without parallel HDF5.

    Memory per rank is bounded by the chunk, not the block: each chunk is written as soon as it
    is predicted, and rho_normalised is written in a second streamed pass over the file.
    """
    if precision not in ("float32", "float64"):
        raise InputError(f"precision {precision!r} unknown. Fix: float32 or float64")
    timer = PhaseTimer()
    require_parallel_hdf5()
    with timer("setup"):
        plan = broadcast_plan(comm, model=model, structure=structure, out=out,
                              spacing_bohr=spacing_bohr, shape=shape, supercell=supercell,
                              vacancies=vacancies, seed=seed, chunk_points=chunk_points,
                              overwrite=overwrite, valence=valence)
        if comm.rank == 0:
            log.info("predict: %s on %d ranks", plan_summary(plan), comm.size)
        net, samples = load_network(comm, plan)
    with GridDecomposition(comm, plan.grid_shape, dims) as decomp, \
            ParallelH5Writer(plan.out, comm) as writer:
        with timer("write"):
            for name in field_names(plan):
                writer.create(name, plan.grid_shape, "f8", {"units": FIELD_UNITS[name]})
        stream, partial = stream_predictions(comm, plan, decomp, writer, net, samples, timer,
                                             precision)
        with timer("reduce"):
            raw = allreduce_exact_partials(comm, partial) * plan.grid.voxel_volume_bohr3
            if not raw > 0:
                err = HpcdensError(f"the predicted density integrates to {raw:.6g} e, not > 0; "
                                   "cannot normalise to N_e (is the model trained?)")
                err.collective = True  # the same on every rank
                raise err
            halo = _halo_stats(comm, stream)
        with timer("write"):
            stream_normalised(comm, plan, decomp, writer, plan.n_electrons / raw)
        attrs = _root_attrs(plan, decomp, {"integral_rho_raw": raw, "precision": precision,
                                           **halo})
        timings, rss, cpu = finish_prediction(comm, plan, writer, attrs, timer)
        dims_used = decomp.dims
    summary = {"out": plan.out, "grid_shape": plan.grid_shape, "n_points": plan.grid.size,
               "n_atoms": len(plan.numbers), "n_ranks": comm.size, "process_grid": dims_used,
               "n_electrons": plan.n_electrons, "integral_rho_raw": raw,
               "valence_source": plan.valence_source, "timings": timings,
               "peak_rss_mb_max": rss, "compute_cpu_s_sum": cpu, **halo}
    if comm.rank == 0:
        log.info("predict: wrote %s (%s points, %d ranks, grid %s); halo grew %d times in %d "
                 "blocks", plan.out, plan.grid.size, comm.size, dims_used,
                 halo["halo_growths"], halo["halo_blocks_grown"])
    return summary






