"""One rank's block of a prediction, chunk by chunk (no MPI): halo atoms, descriptors, the network
and, for delta_rho models, the SAD density on the block's points.

:class:`BlockStream` yields the fields of one chunk of the block at a time (memory bounded by the
chunk); :class:`BlockFields` collects them into the block's arrays when the caller wants them in
memory (:func:`predict_block`). The drivers in :mod:`hpcdens.parallel.predict` stream them into
the prediction file, or keep them. Units: Bohr, e/Bohr^3.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..constants import DEFAULT_PRECISION, PHASES, PRECISIONS  # noqa: F401 - PRECISIONS re-exported
from ..descriptors import from_neighbors
from .decomposition import BlockLayout, chunk_boxes
from .halo import BlockHalo, PeriodicStructure, atoms_near_block
from .inputs import PredictPlan

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


def sample_field_names(n_samples: int) -> list[str]:
    """``rho_sample_<j>``, j = 0 .. N_s - 1: the density of weight sample j."""
    return [f"rho_sample_{j}" for j in range(n_samples)]


def block_field_names(plan: PredictPlan) -> list[str]:
    """The fields of a block's chunks: rho, epistemic_std, aleatoric_std (and rho_sad for
    delta_rho models, out_of_reach for calibrated models), then with ``plan.keep_samples`` the
    N_s sample densities."""
    return (["rho", "epistemic_std", "aleatoric_std"] + (["rho_sad"] if plan.sad else [])
            + (["out_of_reach"] if calibration(plan) else [])
            + (sample_field_names(plan.record.n_samples) if plan.sample_fields else []))


def calibration(plan: PredictPlan) -> dict:
    """The model's uncertainty calibration (``hpcdens calibrate``), {} when uncalibrated."""
    return plan.record.calibration or {}


def has_epistemic(plan: PredictPlan) -> bool:
    """Whether the prediction has an epistemic std: not from one weight sample (``--samples 1``,
    ``--samples mean``, or a model with N_s = 1), whose spread is zero by construction. Such a
    prediction file has no ``epistemic_std`` and no ``out_of_reach`` field."""
    return plan.record.n_samples > 1


def reach_assessed(plan: PredictPlan) -> bool:
    """Whether a prediction file flags points out of reach (field ``out_of_reach``, the
    fraction and verdict): a calibrated model with an epistemic std (:func:`has_epistemic`)."""
    return bool(calibration(plan)) and has_epistemic(plan)


def calibrate_fields(fields: dict, cal: dict) -> int:
    """Apply a calibration to one chunk's fields in place: the epistemic and aleatoric std times
    ``density_scale``, and ``out_of_reach`` = 1.0 where the raw epistemic std exceeds
    ``epistemic_threshold``. Returns the number of such points."""
    raw = fields["epistemic_std"]
    flagged = raw > cal["epistemic_threshold"]
    fields["out_of_reach"] = flagged.astype(float)
    fields["epistemic_std"] = raw * cal["density_scale"]
    fields["aleatoric_std"] = fields["aleatoric_std"] * cal["density_scale"]
    return int(flagged.sum())


class BlockSad:
    """SAD density on points of one block: the lattice sum (:func:`hpcdens.sad.superpose`) of the
    plan's radial atomic densities over the atoms near the block.

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
        from ..sad import superpose

        if not len(self.symbols):
            return np.zeros(len(points_bohr))
        return superpose(self.cell, self.positions, self.symbols, points_bohr, self.radial)


class BlockStream:
    """Stream the predictions of one block chunk by chunk (no MPI); iterate for
    ``(lo, hi, fields)``: the chunk's sub-box ``[lo, hi)`` (global indices) and its fields
    (1-D, C order of the sub-box): ``rho`` (the density: network mean, plus rho_SAD for
    delta_rho models), ``epistemic_std``, ``aleatoric_std``, for delta_rho models ``rho_sad``,
    and with ``plan.keep_samples`` ``rho_sample_<j>`` (weight sample j's density, rho_SAD
    included for delta_rho); e/Bohr^3. For a calibrated model the two std fields are calibrated
    and ``out_of_reach`` flags points beyond its validation snapshots (:func:`calibrate_fields`;
    ``flagged`` counts them). Only one chunk is held at a time. After the iteration, ``halo_radius``,
    ``halo_growths`` and ``halo_atoms`` hold the halo statistics (zero for an empty block).
    ``dtype`` ("float32" or "float64") is the precision of the network pass
    (:func:`hpcdens.bnn_predict.predict`)."""

    def __init__(self, plan: PredictPlan, layout: BlockLayout, model, samples,
                 timer: PhaseTimer | None = None, dtype: str = DEFAULT_PRECISION):
        self.plan, self.layout, self.model, self.samples = plan, layout, model, samples
        self.dtype = dtype
        self.timer = timer or PhaseTimer()
        self.names = block_field_names(plan)
        self.halo_radius, self.halo_growths, self.halo_atoms = 0.0, 0, 0
        self.flagged = 0

    def __iter__(self):
        from ..bnn_predict import predict

        plan, layout, timer = self.plan, self.layout, self.timer
        if layout.local_size == 0:
            return
        grid = plan.grid
        structure = PeriodicStructure.from_arrays(plan.positions_bohr, plan.numbers,
                                                  plan.cell_bohr)
        with timer("halo"):
            halo = BlockHalo(structure, grid.shape, layout.local_start, layout.local_stop,
                             plan.record.n_neighbors)
            sad = BlockSad(plan, structure, layout) if plan.sad else None
        for _, (lo, hi) in chunk_boxes(layout.local_start, layout.local_stop, plan.chunk_points):
            points = grid.cartesian_points(lo, hi)
            built, t0, c0 = halo.build_seconds, time.perf_counter(), time.process_time()
            x = from_neighbors(halo.neighbors(index_points(lo, hi), points),
                               plan.record.n_neighbors)
            grown = halo.build_seconds - built
            timer.add("halo", grown, grown)
            timer.add("descriptors", time.perf_counter() - t0 - grown,
                      time.process_time() - c0 - grown)
            with timer("network"):
                out = predict(self.model, x, self.samples, dtype=self.dtype,
                              keep_samples=plan.sample_fields)
            del x
            fields = {"rho": out["mean"], "epistemic_std": np.sqrt(out["epistemic_var"]),
                      "aleatoric_std": np.sqrt(out["aleatoric_var"])}
            if calibration(plan):
                self.flagged += calibrate_fields(fields, calibration(plan))
            if sad is not None:
                with timer("sad"):
                    fields["rho_sad"] = sad(points)
                fields["rho"] = fields["rho"] + fields["rho_sad"]
            if plan.sample_fields:
                base = fields.get("rho_sad", 0.0)
                for name, values in zip(sample_field_names(len(out["samples"])), out["samples"]):
                    fields[name] = values + base
            self.halo_radius, self.halo_growths, self.halo_atoms = \
                halo.radius, halo.growths, halo.n_atoms
            yield lo, hi, fields


def predict_chunks(plan: PredictPlan, layout: BlockLayout, model, samples,
                   timer: PhaseTimer | None = None, dtype: str = DEFAULT_PRECISION) -> BlockStream:
    """The chunk stream of one block (:class:`BlockStream`; no MPI)."""
    return BlockStream(plan, layout, model, samples, timer, dtype)


class BlockFields:
    """The fields ``names`` of one block, filled chunk by chunk in the order of
    :func:`~hpcdens.parallel.decomposition.chunk_boxes` (which is the C order of the block)."""

    def __init__(self, layout: BlockLayout, names):
        self.shape = layout.local_shape
        self.flat = {name: np.zeros(layout.local_size) for name in names}
        self.offset = 0

    def add(self, fields: dict) -> None:
        """Append one chunk's 1-D fields."""
        count = len(fields["rho"])
        for name, values in fields.items():
            self.flat[name][self.offset:self.offset + count] = values
        self.offset += count

    def arrays(self) -> dict:
        """{name: (local_shape) array}."""
        return {name: values.reshape(self.shape) for name, values in self.flat.items()}


def predict_block(plan: PredictPlan, layout: BlockLayout, model, samples,
                  timer: PhaseTimer | None = None, dtype: str = DEFAULT_PRECISION) -> BlockResult:
    """Predict the fields of one block into memory (no MPI). Empty blocks return empty arrays.

    The same numbers as :func:`predict_chunks`, gathered into arrays of ``layout.local_shape``
    (the whole block in memory)."""
    stream = predict_chunks(plan, layout, model, samples, timer, dtype)
    kept = BlockFields(layout, stream.names)
    for _, _, fields in stream:
        kept.add(fields)
    return BlockResult(kept.arrays(), stream.halo_radius, stream.halo_growths, stream.halo_atoms)
