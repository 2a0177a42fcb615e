"""``hpcdens learn``: active learning of the density model over the composition space.

Every strategy starts from the pure elements (T1). A round labels the compositions it adds (all
their snapshots, :func:`hpcdens.generate.run_generate` with ``extend``, one training set
``DIR/train.h5``), trains a new model ``DIR/round_NN/model.pt`` (:func:`hpcdens.train.run_train`)
and picks the compositions of the next round:

* ``bayesian``: the ``per_round`` candidates (simplex grid of ``candidate_resolution``, minus the
  training compositions) with the highest score (``pick = "top"``), or each the highest one that
  is not a grid neighbour of an earlier pick (``pick = "separated"``, :func:`choose_separated`).
  By default (``score = "density"``) the score of
  a candidate is the paper's acquisition function, the epistemic uncertainty: the epistemic
  STANDARD DEVIATION sqrt(1/N_s sum_j (f_j - mean)^2) (Eq. 7, N_s = model.n_samples fixed weight
  samples drawn with model.seed), averaged over ``score_points`` seeded random grid points of each
  of ``score_structures`` structures (the plan's snapshots 0, 1, ... of that composition), then
  averaged over the structures (e/Bohr^3). ``score = "energy"``: the std of the Harris-Foulkes
  energies of the N_s sample densities (Ha/atom), averaged over the structures
  (:mod:`hpcdens.learning.scoring`).
* ``tessellation``: T1, then what T2 adds, then what T4 adds.
* ``random``: ``per_round`` candidates drawn with a generator seeded by (seed, round).

Rank 0 is the controller and the only writer of the journal ``DIR/state.json``, rewritten
atomically (temporary file + rename) after every finished step (labelled, trained, scored, chosen).
A killed run started again with the same command continues where it stopped: finished DFT labels
are kept by the generate journal, a finished model is not retrained, a model killed during
training resumes from its checkpoint ``model.pt.ckpt`` (the same weights as an uninterrupted run
on as many ranks), journaled scores and choices are reused (scores depend only on the journaled
model file and the seeds). All ranks take part in labelling, training and scoring (candidates
round-robin over ranks, gathered on rank 0).
Documentation: docs/commands/learn.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..composition import atom_counts, parse_composition, simplex_grid, tessellation
from ..config_sections import without_later_defaults
from ..errors import InputError
from ..io.files import sha256_file, write_json
from ..parallel.collective import on_root, self_comm
from .scoring import score_candidates

#: What a round's scores are (journaled with them), per ``[learn] score``; and the run's aggregate.
SCORE_AGGREGATES = {"density": "mean epistemic std (e/Bohr^3)",
                    "energy": "std of the sample densities' Harris-Foulkes energies (Ha/atom)"}
RUN_AGGREGATES = {"density": "mean over structures of the mean over grid points of the epistemic "
                             "standard deviation (e/Bohr^3)",
                  "energy": "mean over structures of the standard deviation over the N_s weight "
                            "samples of the Harris-Foulkes energies of the sample densities "
                            "(Ha/atom)"}

log = logging.getLogger(__name__)

STATE_FORMAT, STATE_VERSION = "hpcdens-learn-state", 1
TESSELLATION_ORDER = (1, 2, 4)


# ------------------------------------------------------------------------------ journal ---

def learn_dir(config, out=None) -> Path:
    """The output directory: ``--out`` or ``<output.directory>/learn``."""
    return Path(out) if out else Path(config.output.directory) / "learn"


def state_path(directory: Path) -> Path:
    return Path(directory) / "state.json"


def write_state(directory: Path, state: dict) -> None:
    """Write the journal atomically: temporary file, fsync, rename."""
    write_json(state_path(directory), state)


def read_state(directory: Path) -> dict | None:
    path = state_path(directory)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"journal {str(path)!r} is not valid JSON ({err}). Fix: --overwrite to "
                         "start again") from err
    if state.get("format") != STATE_FORMAT:
        raise InputError(f"{str(path)!r} is not an hpcdens learn journal. Fix: another --out")
    return state


def settings_fingerprint(config) -> str:
    """Hash of every setting that decides the choices (all sections but output; settings added
    later only when they differ from their defaults, ``config_sections.LATER_DEFAULTS``)."""
    relevant = {s: without_later_defaults(s, asdict(getattr(config, s))) for s in
                ("system", "snapshots", "dft", "descriptors", "model", "train", "learn")}
    relevant["learn"].pop("max_rounds")            # may be raised to continue a finished run
    relevant["learn"].pop("max_compositions")
    relevant["learn"].pop("uncertainty_threshold")
    for key in ("charge_model", "charge_shells_bohr"):    # fitted after training: no pick uses it
        relevant["train"].pop(key, None)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(config, directory: Path, overwrite: bool) -> dict:
    """Rank 0: check the output directory and return the journal (new or resumed)."""
    import shutil

    if not directory.parent.is_dir():
        raise InputError(f"output directory {str(directory.parent)!r} does not exist. Fix: create "
                         f"it (mkdir -p {directory.parent}) or pass another --out")
    if overwrite and directory.exists():
        shutil.rmtree(directory)
    fp = settings_fingerprint(config)
    state = read_state(directory)
    if directory.is_dir():                            # a journal write killed before its rename
        for tmp in directory.glob(f"{state_path(directory).name}.tmp*"):
            tmp.unlink(missing_ok=True)
    if state is not None:
        if state["fingerprint"] != fp:
            raise InputError(f"{str(directory)!r} holds an active-learning run made with other "
                             "settings than this input file. Fix: restore them, --overwrite to "
                             "start again, or another --out")
        if "pick" not in state:                       # a journal from before [learn] pick
            state["pick"] = config.learn.pick
            write_state(directory, state)
        return state
    directory.mkdir(exist_ok=True)
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "fingerprint": fp,
             "name": config.name, "strategy": config.learn.strategy, "pick": config.learn.pick,
             "elements": list(config.system.elements),
             "candidates": [c.label for c in candidates(config, warn=True)],
             "aggregate": RUN_AGGREGATES[config.learn.score],
             "rounds": [], "stopped": None}
    write_state(directory, state)
    return state


# -------------------------------------------------------------------------- compositions ---

def canonical(comp, elements):
    """The composition as ``run_generate`` will name it (parsed back from its string)."""
    return parse_composition(str(comp), elements)


def candidates(config, warn: bool = False) -> list:
    """Candidate compositions: the simplex grid of ``learn.candidate_resolution``, less the points
    the cell cannot tell apart: on a built lattice of n sites a composition is realised with
    whole atom counts (:func:`hpcdens.composition.atom_counts`), and a grid point realised like a
    pure element or an earlier grid point is dropped (with a warning), so that no round labels a
    composition the model has already seen. ``warn``: log each point left out."""
    els = config.system.elements
    grid = [canonical(c, els) for c in simplex_grid(els, config.learn.candidate_resolution)]
    n_sites = config.system.n_sites()
    if n_sites is None:                              # sites from a structure file
        return grid
    seen = {atom_counts(c, n_sites)[1].label: canonical(c, els).label
            for c in tessellation(els, 1)}
    kept = []
    for c in grid:
        realised = atom_counts(c, n_sites)[1].label
        if realised in seen and seen[realised] != c.label:
            if warn:
                log.warning("candidate %s is realised on %d sites as %s, like %s: left out. Fix "
                            "for more candidates: a larger system.supercell or a smaller "
                            "learn.candidate_resolution", c.label, n_sites, realised,
                            seen[realised])
            continue
        seen.setdefault(realised, c.label)
        kept.append(c)
    return kept


def by_label(config) -> dict:
    """Label -> Composition for every composition a run can use (candidates, tessellations)."""
    els = config.system.elements
    found = {c.label: c for c in candidates(config)}
    for level in TESSELLATION_ORDER:
        for c in tessellation(els, level):
            c = canonical(c, els)
            found.setdefault(c.label, c)
    return found


def initial(config) -> list[str]:
    """The first round's compositions: the pure elements (T1)."""
    return [canonical(c, config.system.elements).label
            for c in tessellation(config.system.elements, 1)]


def labelling_config(config, labels: list[str], comps: dict):
    """``config`` with exactly the compositions ``labels`` (all their snapshots)."""
    spec = replace(config.compositions, list=tuple(str(comps[lb]) for lb in labels),
                   tessellation=None, grid_resolution=0, random=0)
    return replace(config, compositions=spec)


def choose_random(remaining: list[str], k: int, seed: int, round_no: int) -> list[str]:
    """``k`` of the (sorted) remaining labels, drawn with a generator seeded by (seed, round)."""
    pool = sorted(remaining)
    rng = np.random.default_rng([seed, round_no])
    return [pool[i] for i in sorted(rng.choice(len(pool), size=min(k, len(pool)), replace=False))]


def choose_top(scores: dict[str, float], k: int) -> list[str]:
    """The ``k`` labels of highest score (ties: label order)."""
    return [lb for lb, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def grid_neighbours(a, b, resolution: int) -> bool:
    """Whether compositions ``a`` and ``b`` are neighbours on the simplex grid k_i / resolution:
    one step of 1/resolution moved from one element to another (L1 distance 2/resolution)."""
    d = np.abs(np.subtract(a.fractions, b.fractions)) * resolution
    return bool(np.isclose(d.sum(), 2.0) and np.isclose(d.max(), 1.0))


def choose_separated(scores: dict[str, float], k: int, comps: dict, resolution: int) -> list[str]:
    """``k`` labels by score, each the highest one not a grid neighbour of a label chosen before
    it (the peaks of the score over the composition grid, one per region of high uncertainty);
    when every label left neighbours a chosen one, the rest follow by score."""
    ranked = choose_top(scores, len(scores))
    chosen: list[str] = []
    for lb in ranked:
        if len(chosen) < k and not any(grid_neighbours(comps[lb], comps[c], resolution)
                                       for c in chosen):
            chosen.append(lb)
    return chosen + [lb for lb in ranked if lb not in chosen][:k - len(chosen)]


def next_tessellation(config, training: list[str]) -> list[str]:
    """What the next tessellation level adds to ``training`` (empty after T4)."""
    els, have = config.system.elements, set(training)
    for level in TESSELLATION_ORDER:
        new = [canonical(c, els).label for c in tessellation(els, level)]
        new = [lb for lb in new if lb not in have]
        if new:
            return new
    return []


# ----------------------------------------------------------------------------- training ---

def train_round(config, train_h5: Path, model: Path, comm, round_no: int, progress: bool) -> dict:
    """Train the round's model on every rank; returns ``run_train``'s summary.

    A checkpoint ``<model>.ckpt`` of a round not journaled as trained was left by a killed run:
    training resumes from it (same seeds, counter-based random streams: the same weights as an
    uninterrupted run on the same number of ranks). A checkpoint that does not fit (other data
    or settings, unreadable) is discarded with a warning and the round is trained from scratch.
    Without a checkpoint the round is trained from scratch (an earlier model file is replaced)."""
    from ..training.run import checkpoint_path, run_train

    ckpt = checkpoint_path(model)
    if on_root(comm, ckpt.is_file):
        if comm.rank == 0:
            log.info("round %d: resuming the training of a killed run from %s", round_no, ckpt)
        try:
            return run_train(config, [train_h5], model, comm, resume=True, overwrite=True,
                             progress=progress)
        except InputError as err:                # raised on every rank together (on_root)
            if comm.rank == 0:
                log.warning("round %d: the checkpoint %s cannot be resumed (%s); training this "
                            "round from scratch", round_no, ckpt, err)
    return run_train(config, [train_h5], model, comm, overwrite=True, progress=progress)


# --------------------------------------------------------------------------------- loop ---

def _dft_wall(train_h5: Path, labels: list[str]) -> tuple[float, int, int]:
    """Summed SCF wall time (s, as measured when computed, also for labels reused from a pool),
    number, and number reused (``reused_from``) of the snapshots of ``labels`` in ``train_h5``."""
    from ..io.training_set import snapshot_attrs

    wanted = set(labels)
    mine = [a for key, a in snapshot_attrs(train_h5).items() if key.split("/")[0] in wanted]
    return (sum(float(a.get("wall_time_s", 0.0)) for a in mine), len(mine),
            sum("reused_from" in a for a in mine))


RETURN, STOPPED = "return", "stopped"
"""What a round step tells the loop besides going on: return now (``stop_at`` reached, as a
killed run would leave the journal), or the run has stopped."""


@dataclass
class _Run:
    """One active-learning run on every rank: the settings, the journal and where it lives."""

    config: object
    comm: object
    directory: Path
    state: dict
    comps: dict
    progress: bool
    stop_at: str | None
    reuse: list                                      # label pools (Paths), checked

    @property
    def train_h5(self) -> Path:
        return self.directory / "train.h5"

    def save(self, step: str | None = None) -> bool:
        """Journal the state (rank 0); whether ``step`` is where the run must return."""
        if self.comm.rank == 0:
            write_state(self.directory, self.state)
        return step is not None and step == self.stop_at

    def stop(self, r: dict, reason: str) -> str:
        """End the run after round ``r`` for ``reason``."""
        r["chosen"], r["done"] = [], True
        self.state["stopped"] = reason
        self.save("chosen")
        return STOPPED


def _open_round(run: _Run) -> dict:
    """The round to work on: the last one, or a new one when the last has chosen."""
    rounds = run.state["rounds"]
    if not rounds or (rounds[-1].get("chosen") is not None and rounds[-1]["done"]):
        prev = rounds[-1] if rounds else None
        training = prev["training"] + prev["chosen"] if prev else initial(run.config)
        rounds.append({"round": len(rounds) + 1, "training": training,
                       "new": prev["chosen"] if prev else training, "done": False})
        run.save()
    return rounds[-1]


def _label(run: _Run, r: dict) -> str | None:
    """DFT labels of the round's training compositions (new snapshots only)."""
    from ..labelling import run_generate

    comm = run.comm
    run_generate(labelling_config(run.config, r["training"], run.comps), run.train_h5, comm,
                 extend=True, progress=run.progress, reuse=run.reuse)
    wall, n, reused = comm.bcast(_dft_wall(run.train_h5, r["new"]) if comm.rank == 0 else None)
    r.update(labelled=True, dft_wall_s=wall, new_snapshots=n, reused_snapshots=reused)
    return RETURN if run.save("labelled") else None


def _train(run: _Run, r: dict) -> str | None:
    """The round's model, journaled with its hashes (rank 0's record, the same on every rank)."""
    from ..io.model import weights_sha256

    comm, directory = run.comm, run.directory
    model = directory / f"round_{r['round']:02d}" / "model.pt"
    if comm.rank == 0:
        model.parent.mkdir(exist_ok=True)
    comm.Barrier()
    s = train_round(labelling_config(run.config, r["training"], run.comps), run.train_h5, model,
                    comm, r["round"], run.progress)
    done = None
    if comm.rank == 0:
        done = dict(trained=True, model=str(model.relative_to(directory)),
                    model_sha256=sha256_file(model), weights_sha256=weights_sha256(model),
                    validation_nrmse=s.get("best", {}).get("nrmse"),
                    train_wall_s=s["wall_time_s"], epochs_run=s["epochs_run"])
    r.update(comm.bcast(done, root=0))
    return RETURN if run.save("trained") else None


def _choose(run: _Run, r: dict) -> str | None:
    """The compositions of the next round, by the strategy; or the end of the run."""
    config, lc, state = run.config, run.config.learn, run.state
    stop = _stop_reason(config, r)
    if stop:
        return run.stop(r, stop)
    remaining = [lb for lb in state["candidates"] if lb not in set(r["training"])]
    k = min(lc.per_round, len(remaining),
            lc.max_compositions - len(r["training"]) if lc.max_compositions else lc.per_round)
    if not remaining and lc.strategy != "tessellation":
        return run.stop(r, "no candidates left")
    if lc.strategy == "bayesian":
        if r.get("scores") is None:
            model = run.directory / r["model"]
            on_root(run.comm, _check_model, model, r["model_sha256"])
            r["scores"] = score_candidates(config, model, remaining, run.comps, run.comm,
                                           run.reuse)
            r["score_aggregate"] = SCORE_AGGREGATES[lc.score]
            if run.save("scored"):
                return RETURN
        top = max(r["scores"].values())
        if lc.uncertainty_threshold and top < lc.uncertainty_threshold:
            return run.stop(r, f"uncertainty_threshold: largest score {top:.4g} < "
                               f"{lc.uncertainty_threshold:g}")
        chosen = (choose_top(r["scores"], k) if lc.pick == "top" else
                  choose_separated(r["scores"], k, run.comps, lc.candidate_resolution))
    elif lc.strategy == "random":
        chosen = choose_random(remaining, k, lc.seed, r["round"])
    else:
        chosen = next_tessellation(config, r["training"])
        if lc.max_compositions:
            chosen = chosen[:max(0, lc.max_compositions - len(r["training"]))]
    if not chosen:
        return run.stop(r, "no compositions left to add")
    r["chosen"], r["done"] = chosen, True
    return RETURN if run.save("chosen") else None


def run_learn(config, out=None, comm=None, overwrite: bool = False, progress: bool = False,
              stop_at: str | None = None, reuse=None) -> dict:
    """Run (or resume) active learning on every rank of ``comm``; returns the journal. ``reuse``:
    label pools (:func:`hpcdens.labelling.reuse_sources`, checked before anything is written).

    ``stop_at`` (tests): return right after the first round step of that name is journaled
    ("labelled", "trained", "scored" or "chosen"), as a killed run would leave it."""
    from ..labelling import reuse_sources

    if comm is None:
        comm = self_comm()
    directory, pools = learn_dir(config, out), on_root(comm, reuse_sources, config, reuse)
    state = on_root(comm, prepare, config, directory, overwrite)
    run = _Run(config, comm, directory, state, by_label(config), progress, stop_at, pools)
    if state["stopped"] and state["stopped"].startswith("max_") \
            and _stop_reason(config, state["rounds"][-1]) is None:
        last = state["rounds"][-1]                   # a budget was raised: choose again
        last["chosen"], last["done"], state["stopped"] = None, False, None
    while not state["stopped"]:                       # a step that stops the run sets it
        r, outcome = _open_round(run), None
        if not r.get("labelled"):
            outcome = _label(run, r)
        if outcome is None and not r.get("trained"):
            outcome = _train(run, r)
        if outcome is None and r.get("chosen") is None:
            outcome = _choose(run, r)
        if outcome == RETURN:
            return state
    comm.Barrier()
    return state


def _stop_reason(config, r: dict) -> str | None:
    lc = config.learn
    if r["round"] >= lc.max_rounds:
        return f"max_rounds: {lc.max_rounds} models trained"
    if lc.max_compositions and len(r["training"]) >= lc.max_compositions:
        return f"max_compositions: {len(r['training'])} training compositions"
    return None


def _check_model(model: Path, sha: str):
    if not model.is_file() or sha256_file(model) != sha:
        raise InputError(f"model {str(model)!r} is missing or differs from the one journaled. "
                         "Fix: --overwrite to start again")
