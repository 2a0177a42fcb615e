"""``hpcdens generate``: label every (composition, snapshot) of an input file with DFT, farmed over
MPI ranks, into one HDF5 training set.

The MPI shell around :mod:`hpcdens.plan`, :mod:`hpcdens.dft` and :mod:`hpcdens.data`. Each rank
labels its share of the tasks and writes each result as a part file as soon as it is done (the
journal); rank 0 assembles the training set at the end. A killed run keeps every finished part;
started again it labels only what is missing. Failed SCFs are recorded with their reason (and not
retried unless ``retry_failed``), never stored as labels. Labels of other complete training sets
made with the same settings (a label pool, ``reuse``) are copied instead of computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

from . import __version__
from .config import Config
from .dft import atomic_density, check_mesh_resolves, get_backend
from .errors import DFTFailed, HpcdensError, InputError
from .io import training_set as data
from .io.files import write_json
from .parallel.collective import on_root
from .plan import Task, build_plan, template_cell

log = logging.getLogger(__name__)


def settings_fingerprint(config: Config) -> str:
    """Hash of everything that decides the labels (structures and DFT settings)."""
    relevant = {"system": asdict(config.system), "snapshots": asdict(config.snapshots),
                "dft": asdict(config.dft)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_output(out: Path, config: Config, overwrite: bool, extend: bool) -> str:
    """Check and prepare the output on one rank; returns a status line. Raises InputError."""
    parts, manifest = data.parts_dir(out), data.parts_dir(out) / "manifest.json"
    if not out.parent.is_dir():
        raise InputError(f"output directory {str(out.parent)!r} does not exist. Fix: create it "
                         f"(mkdir -p {out.parent}) or pass another --out")
    if overwrite:
        out.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    elif out.exists() and not extend:
        raise InputError(f"training set {str(out)!r} already exists. Fix: --extend to label what is "
                         "missing from it, --overwrite to start again, or another --out")
    fingerprint = settings_fingerprint(config)
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old.get("fingerprint") != fingerprint:
            raise InputError(f"the finished snapshots in {str(parts)!r} were made with other "
                             "structure or DFT settings than this input file. Fix: --overwrite to "
                             "start again, or another --out")
        data.clean_partial(out)
        return "resuming"
    parts.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"fingerprint": fingerprint, "name": config.name})
    return "new"


def reuse_sources(config: Config, reuse) -> list[Path]:
    """The label pools ``reuse`` (None, one path or a list of paths) as Paths, checked: each must
    be a complete training set made with the structure and DFT settings of ``config`` (equal
    :func:`settings_fingerprint`; the compositions may differ). Raises InputError."""
    paths = [] if reuse is None else [reuse] if isinstance(reuse, (str, Path)) else list(reuse)
    fingerprint = settings_fingerprint(config)
    for path in map(Path, paths):
        with data.open_complete(path, "label pool") as f:
            theirs = f.attrs.get("fingerprint")
        if theirs != fingerprint:
            raise InputError(f"label pool {str(path)!r} was made with other structure or DFT "
                             f"settings than this input file (settings fingerprint {theirs!r}, "
                             f"this input file's {fingerprint!r}). Fix: give [system], [snapshots] "
                             "and [dft] the pool's values, or leave the pool out")
    return list(map(Path, paths))


def reuse_labels(out: Path, tasks: list[Task], pools: list[Path]) -> int:
    """Copy the snapshots of ``pools`` that tasks not yet complete in ``out`` ask for (same key,
    first pool that holds it) into their part files, marked ``reused_from``; a failure record of
    such a task is removed. Returns how many were copied."""
    n = 0
    for pool in pools:
        with data.open_complete(pool, "label pool") as src:
            have = set(json.loads(src.attrs["snapshot_keys"]))
            for task in tasks:
                if task.key in have and not data.part_is_complete(out, task.key):
                    data.copy_snapshot(src, task.key, out, {"reused_from": str(pool.resolve())})
                    data.failure_path(out, task.key).unlink(missing_ok=True)
                    n += 1
    if pools:
        log.info("%d snapshots reused from %s", n, ", ".join(map(str, pools)))
    return n


def pool_atoms(pools, key: str):
    """The atoms of snapshot ``key`` from the first label pool of ``pools`` that holds it (pools
    checked by :func:`reuse_sources`), or None."""
    for pool in pools:
        if key in data.snapshot_keys(pool):
            return data.read_snapshot(pool, key).atoms
    return None


def pending(out: Path, tasks: list[Task], retry_failed: bool) -> list[int]:
    """Indices of the tasks that still need a DFT label."""
    todo = []
    for i, task in enumerate(tasks):
        if data.part_is_complete(out, task.key):
            continue
        failed = data.failure_path(out, task.key)
        if failed.is_file() and not retry_failed:
            continue
        failed.unlink(missing_ok=True)
        todo.append(i)
    return todo


def assign(todo: list[int], n_ranks: int) -> list[list[int]]:
    """Round-robin shares of the pending tasks (all tasks of an input file have the same cell
    size, so their costs are alike)."""
    return [todo[r::n_ranks] for r in range(n_ranks)]


def label(task: Task, out: Path, run_id: str) -> bool:
    """Build, label and journal one task. Returns True when stored, False when recorded failed."""
    backend = get_backend(task.config.dft.backend)
    atoms = task.build_atoms()
    try:
        result = backend.scf(atoms, task.config.dft)
    except DFTFailed as err:
        data.write_failure(out, task.key, f"DFT failed: {err}", {"run_id": run_id})
        return False
    if not result.converged:
        data.write_failure(out, task.key, result.message or "SCF not converged",
                           {"run_id": run_id, "n_iterations": result.n_iterations,
                            "wall_time_s": result.wall_time_s})
        return False
    rho_sad = atomic_density(atoms, result.grid, task.config.dft)
    data.write_part(out, task.key, atoms, result, rho_sad, {"run_id": run_id})
    return True


class _Progress:
    """Rank 0's progress bar with ETA: counts finished part and failure files every second, so
    it moves while rank 0 itself is busy inside an SCF."""

    def __init__(self, out: Path, total: int, already: int, enabled: bool):
        self.out, self.already, self.stop = out, already, threading.Event()
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="DFT labels", unit="snapshot", smoothing=0.1)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()

    def _count(self) -> int:
        return _done_count(self.out) - self.already

    def _poll(self):
        while not self.stop.wait(1.0):
            self.bar.n = self._count()
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.stop.set()
            self.thread.join()
            self.bar.n = self._count()
            self.bar.close()


def check_dft_inputs(config: Config, composition) -> dict:
    """Before any structure is built or DFT run: every element has a basis and pseudopotential in
    the backend's families, and the grid of the input's cell resolves every element's atomic
    density (:func:`hpcdens.dft.check_mesh_resolves`; the cell of ``composition``). Raises
    :class:`DFTInputError` (an InputError) with the fix; returns element -> typical charge error."""
    return check_mesh_resolves(template_cell(config, composition), config.system.elements, config.dft)


def run_generate(config: Config, out: Path, comm, overwrite=False, extend=False,
                 retry_failed=False, progress=True, reuse=None) -> dict:
    """Label the tasks of ``config`` into ``out`` on all ranks of ``comm``; returns the summary
    (on every rank). ``reuse``: label pools (:func:`reuse_sources`) whose snapshots of the same
    task key are copied instead of labelled. Input problems raise InputError on every rank
    together, before anything is written; so does a mesh too coarse for the elements' atomic
    densities (:func:`hpcdens.dft.check_mesh_resolves`), before any DFT runs."""
    tasks = build_plan(config)
    if tasks:
        on_root(comm, check_dft_inputs, config, tasks[0].composition)
    pools = on_root(comm, reuse_sources, config, reuse)
    status = on_root(comm, prepare_output, out, config, overwrite, extend)
    reused = on_root(comm, reuse_labels, out, tasks, pools)
    todo = comm.bcast(pending(out, tasks, retry_failed) if comm.rank == 0 else None, root=0)
    # time, process and a random token: two runs started by one process in the same second differ
    run_id = comm.bcast(f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}",
                        root=0)
    shares = assign(todo, comm.size)
    if comm.rank == 0:
        log.info("%s: %d snapshots, %d to label on %d ranks", status, len(tasks), len(todo),
                 comm.size)
    bar = _Progress(out, len(todo), _done_count(out), progress and comm.rank == 0)
    error = _work(shares[comm.rank], tasks, out, run_id)
    errors = [e for e in comm.allgather(error) if e]
    bar.close()
    if errors:
        raise HpcdensError("; ".join(errors))
    summary = None
    if comm.rank == 0:
        meta = {"name": config.name, "hpcdens_version": __version__, "backend": config.dft.backend,
                "fingerprint": settings_fingerprint(config),
                "input_file": config.source.read_text() if config.source else ""}
        n, failures = data.assemble(out, [t.key for t in tasks], meta)
        summary = {"snapshots": n, "failures": failures, "tasks": len(tasks),
                   "labelled_now": len(todo), "reused": reused, "ranks": comm.size}
    return comm.bcast(summary, root=0)


def _done_count(out: Path) -> int:
    parts = data.parts_dir(out)
    return len(list(parts.glob("*.h5"))) + len(list(parts.glob("*.failed.json")))


def _work(indices: list[int], tasks: list[Task], out: Path, run_id: str) -> str | None:
    """Label this rank's tasks; stop at the first setup error and return its message."""
    for i in indices:
        try:
            label(tasks[i], out, run_id)
        except HpcdensError as err:
            return f"{tasks[i].key}: {err}"
    return None


def summary_table(out: Path) -> str:
    """Per-composition table of a finished training set: snapshots, failures, energy, SCF cost."""
    rows = {}
    for snap in data.read_training_set(out):
        comp = snap.attrs.get("requested_composition", snap.key.split("/")[0])
        r = rows.setdefault(comp, {"n": 0, "e": 0.0, "it": 0, "t": 0.0})
        r["n"] += 1
        r["e"] += snap.attrs["energy_ha"] / len(snap.atoms)
        r["it"] += snap.attrs["n_iterations"]
        r["t"] += snap.attrs["wall_time_s"]
    lines = [f"{'composition':<28}{'snapshots':>10}{'E (Ha/atom)':>14}{'SCF iter':>10}{'SCF s':>9}"]
    for comp, r in rows.items():
        n = r["n"]
        lines.append(f"{comp:<28}{n:>10}{r['e'] / n:>14.6f}{r['it'] / n:>10.1f}{r['t'] / n:>9.1f}")
    return "\n".join(lines)
