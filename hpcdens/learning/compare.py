"""``hpcdens learn-compare``: learning curves of active-learning runs on one DFT test set.

For every learn directory DIR (the ``--out`` of an ``hpcdens learn`` run: ``DIR/state.json`` and
``DIR/round_NN/model.pt``) and every round of its journal that has a trained model, the model is
evaluated on TESTSET with :func:`hpcdens.evaluate.run_evaluate` (all ranks) into
``OUT/<name>/round_NN/`` (``<name>``: the directory's name). Per (DIR, round) the errors are then
aggregated over the test snapshots (all of them, or with ``exclude_training`` only those whose
composition is not a training composition of that round):

* mean and max absolute Harris-Foulkes energy error, Ha/atom (free energy E - TS, Eq. 10);
* mean and max density NRMSE (renormalised density, Eq. 9), mean relative L1 (%);
* how many snapshots are within chemical accuracy (1.6e-3 Ha/atom), and whether all are.

Rank 0 writes ``OUT/compare.csv``, ``compare.json``, ``learning_curves.png`` and prints a table.

Cache (:mod:`hpcdens.learning.compare_cache`): a round whose ``evaluate.json`` and matching
``source.json`` (model and test-set SHA-256, DFT settings) exist is not evaluated again, so a
killed comparison resumes and a grown learn run evaluates only its new rounds; a round whose
model predicts exactly as one evaluated earlier gets a copy of that evaluation (the first round
of runs that differ only in strategy or ``[learn]`` seed). ``charge_model``: every round with the
atomic-charge correction; ``charge_correction`` False: none with it. ``OUT/manifest.json`` marks
OUT as a comparison output.

Training compositions (``exclude_training``): a test snapshot is one of a round when its
requested or realised composition equals (1e-6 per element) a training composition of the round,
as requested or as realised in ``DIR/train.h5``: small cells round fractions (a 2-atom cell
realises Si0.25Ge0.75 as Si0.5Ge0.5). Documentation: docs/commands/learn-compare.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from .. import energy as en
from ..config_sections import LATER_DEFAULTS
from ..errors import HpcdensError, InputError
from ..io.files import sha256_file, write_csv, write_json
from ..parallel.collective import on_root
from .compare_cache import (
    SOURCE,
    cache_hit,
    check_fittable,
    copy_evaluation,
    make_folders,
    twin_key,
    with_charge_model,
)
from .compare_report import plot_learning_curves, seed_spread, to_chemical_accuracy

log = logging.getLogger("hpcdens.learn_compare")

FORMAT, VERSION = "hpcdens-learn-compare", 1
MANIFEST = "manifest.json"
CSV_NAME, JSON_NAME, PNG_NAME = "compare.csv", "compare.json", "learning_curves.png"
HELD_OUT = "_held_out"  # suffix of the --exclude-training outputs: both kinds share OUT's cache


def output_names(exclude_training: bool) -> tuple[str, str, str]:
    """(csv, json, png) names in OUT: ``compare.csv`` ..., or ``compare_held_out.csv`` ... with
    ``exclude_training``, so one OUT holds both and evaluates each round once."""
    if not exclude_training:
        return CSV_NAME, JSON_NAME, PNG_NAME
    return tuple(n.replace(".", f"{HELD_OUT}.") for n in (CSV_NAME, JSON_NAME, PNG_NAME))


RESERVED = {MANIFEST, *output_names(False), *output_names(True)}
COMPOSITION_TOL = 1e-6
#: DFT settings that change an energy (ranks_per_task does not).
_SETTINGS_KEYS = ("backend", "xc", "smearing_kelvin", "basis", "pseudo", "scf_tol",
                  "max_scf_cycles", "sparc_psp_dir", "mesh_spacing_bohr")
COLUMNS = ("strategy", "name", "round", "n_training", "training", "n_test", "n_test_total",
           "mean_abs_error_ha_per_atom", "max_abs_error_ha_per_atom", "mean_nrmse", "max_nrmse",
           "mean_relative_l1_percent", "n_chemically_accurate", "chemically_accurate",
           "model_sha256", "evaluation", "directory")


# ----------------------------------------------------------------------------- compositions
def _fractions(spec, elements) -> tuple[float, ...]:
    from ..composition import parse_composition

    return tuple(parse_composition(str(spec), elements).fractions)


def _same_composition(a, b) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) <= COMPOSITION_TOL


def _intersects(mine, others) -> bool:
    return any(_same_composition(a, b) for a in mine for b in others)


def composition_records(path: Path, what: str) -> dict[str, tuple[str, str]]:
    """``{key: (requested, realised)}`` composition strings of every snapshot of a training-set
    file, from its attributes only (no densities read). Raises InputError for a file that is not
    a complete hpcdens training set."""
    from ..io.training_set import snapshot_attrs

    out = {}
    for key, attrs in snapshot_attrs(path, what).items():
        requested = str(attrs.get("requested_composition", key.split("/")[0]))
        out[key] = (requested, str(attrs.get("composition", requested)))
    return out


def training_compositions(directory: Path, labels, elements) -> list[tuple[float, ...]]:
    """Fractions of a round's training compositions: the journal's labels, and the realised
    compositions of their snapshots in ``DIR/train.h5`` (when the file can be read)."""
    found = [_fractions(lb, elements) for lb in labels]
    train = Path(directory) / "train.h5"
    if not train.is_file():
        log.warning("learn-compare: %s has no train.h5; training compositions matched by their "
                    "labels only", directory)
        return found
    wanted = set(labels)
    try:
        records = composition_records(train, "training set")
    except InputError as err:
        log.warning("learn-compare: %s; training compositions matched by their labels only", err)
        return found
    for key, (_, realised) in records.items():
        if key.split("/")[0] in wanted:
            frac = _fractions(realised, elements)
            if not any(_same_composition(frac, f) for f in found):
                found.append(frac)
    return found


# ----------------------------------------------------------------------------- checks
def _settings_record(settings) -> dict:
    record = asdict(settings)
    return {k: record.get(k) for k in _SETTINGS_KEYS}


def _check_out(out: Path, overwrite: bool) -> bool:
    """Checks OUT; returns whether it is an earlier comparison's output."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} exists and is not a directory. Fix: choose another "
                         "--out")
    if not out.parent.is_dir():
        raise InputError(f"the parent of the output directory {str(out)!r} does not exist. Fix: "
                         f"mkdir -p {out.parent}, or choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    try:
        ours = json.loads((out / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours and not overwrite:
        raise InputError(f"output directory {str(out)!r} is not empty and is not a learn-compare "
                         "output (no manifest.json). Fix: choose another --out, or pass "
                         "--overwrite to write into it")
    return ours


def _read_journal(directory: Path, shown) -> dict:
    from .loop import STATE_FORMAT, state_path

    fix = "Fix: pass the --out directory of an 'hpcdens learn' run"
    if not directory.is_dir():
        raise InputError(f"learn directory {str(shown)!r} does not exist. {fix}")
    path = state_path(directory)
    if not path.is_file():
        raise InputError(f"{str(shown)!r} is not an hpcdens learn directory (no {path.name}). "
                         f"{fix}")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{str(path)!r} of learn directory {str(shown)!r} cannot be read "
                         f"({err}). {fix}") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT \
            or not isinstance(state.get("rounds"), list):
        raise InputError(f"{str(path)!r} of {str(shown)!r} is not an hpcdens learn journal. {fix}")
    return state


def _names(directories: list[Path]) -> list[str]:
    """Output names: the directory's name, made unique with a hash of its path when needed."""
    base = [d.name or "learn" for d in directories]
    names = []
    for d, b in zip(directories, base):
        if base.count(b) > 1 or b in RESERVED:
            b = f"{b}-{hashlib.sha1(str(d).encode()).hexdigest()[:8]}"
        names.append(b)
    return names


def _check_paths(testset: Path, dirs, out: Path, overwrite: bool):
    """The test set's composition records, the learn directories (resolved), and whether OUT is
    an earlier comparison's output."""
    if not testset.is_file():
        raise InputError(f"test set {str(testset)!r} does not exist. Fix: label one with "
                         "'hpcdens generate' or check the path")
    test_comps = composition_records(testset, "test set")
    if not test_comps:
        raise InputError(f"test set {str(testset)!r} holds no snapshots. Fix: label one with "
                         "'hpcdens generate'")
    if not dirs:
        raise InputError("no learn directory given. Fix: pass one or more DIR of 'hpcdens learn'")
    directories = [Path(d).resolve() for d in dirs]
    for i, d in enumerate(directories):
        if d in directories[:i]:
            raise InputError(f"learn directory {str(dirs[i])!r} is given twice. Fix: pass each "
                             "DIR once")
    ours = _check_out(out, overwrite)
    if out.resolve() in directories:
        raise InputError(f"--out {str(out)!r} is one of the learn directories. Fix: choose "
                         "another --out")
    return test_comps, directories, ours


def _check_elements(states, dirs, elements, test_comps, testset) -> tuple[list, dict]:
    """The element order (default: the first journal's) checked against every journal, and the
    test snapshots' (requested, realised) fractions."""
    if elements is None:
        elements = list(states[0].get("elements") or [])
    for d, state in zip(dirs, states):
        if sorted(state.get("elements") or []) != sorted(elements):
            raise InputError(f"learn directory {str(d)!r} models elements "
                             f"{state.get('elements')}, not {list(elements)}. Fix: compare runs "
                             "of one system (and pass --config of that system)")
    test_fracs = {}
    for key, (req, real) in test_comps.items():
        try:
            test_fracs[key] = [_fractions(req, elements), _fractions(real, elements)]
        except InputError as err:
            raise InputError(f"test snapshot {key!r} of {str(testset)!r}: {err}. Fix: a test set "
                             f"of the learn runs' elements {list(elements)}") from err
    return list(elements), test_fracs


def _check_round_model(model: Path, r: dict, shown, test_species: set):
    """The SHA-256 and record of round ``r``'s model, checked against its journal and the test
    set's elements."""
    from ase.data import chemical_symbols

    from ..io.model import load_model

    again = ("run that learn directory again ('hpcdens learn CONFIG --out DIR --overwrite')")
    if not model.is_file():
        raise InputError(f"model {str(model)!r} of round {r['round']} of {str(shown)!r} is "
                         f"missing. Fix: restore it, or {again}")
    sha = sha256_file(model)
    if sha != r.get("model_sha256"):
        raise InputError(f"model {str(model)!r} of round {r['round']} of {str(shown)!r} differs "
                         f"from the one its journal records (SHA-256). Fix: restore it, or {again}")
    record = load_model(model)[1]
    unseen = test_species - set(record.species)
    if unseen:
        names = ", ".join(chemical_symbols[z] for z in sorted(unseen))
        raise InputError(f"the model of round {r['round']} of {str(shown)!r} never saw {names} in "
                         "training, and the test set holds it: that model cannot predict those "
                         "snapshots. Fix: run that learn directory again with more "
                         "snapshots.per_composition (the validation split can take every "
                         "snapshot of a pure element), or leave the DIR out")
    return sha, record


def _jobs(directories, dirs, states, out: Path, settings, elements, snaps) -> tuple[list, list]:
    """One job per trained round of every learn directory (its model checked, the DFT settings
    of its energies checked against every test snapshot), and one run entry per directory."""
    from ..dft import settings_from_record, valence_electrons
    from ..io.model import prediction_sha256

    test_species = {int(z) for s in snaps for z in s.atoms.numbers}
    checked, jobs, runs = [], [], []
    for d, shown, name, state in zip(directories, dirs, _names(directories), states):
        trained = [r for r in state["rounds"] if r.get("trained") and r.get("model")]
        if not trained:
            raise InputError(f"learn directory {str(shown)!r} has no trained model yet. Fix: let "
                             f"'hpcdens learn' finish a round in it, or leave it out")
        runs.append({"name": name, "directory": str(d), "strategy": state.get("strategy"),
                     # a journal from before [learn] pick (not resumed since) picked the default
                     "pick": state.get("pick", LATER_DEFAULTS["learn"]["pick"]),
                     "stopped": state.get("stopped"),
                     "rounds": [r["round"] for r in trained]})
        for r in trained:
            model = d / r["model"]
            sha, record = _check_round_model(model, r, shown, test_species)
            use = settings if settings is not None else settings_from_record(record.dft)
            if use not in checked:                 # the DFT settings against every test snapshot
                for s in snaps:
                    en.check_same_settings(use, s, valence_electrons(s.atoms, use))
                checked.append(use)
            jobs.append({"name": name, "directory": str(d), "strategy": state.get("strategy"),
                         "round": r["round"], "training": list(r["training"]),
                         "training_fractions": training_compositions(d, r["training"], elements),
                         "model": str(model), "model_sha256": sha,
                         "prediction_sha256": prediction_sha256(model), "settings": use,
                         "evaluated_model": str(model), "has_charges": record.charges is not None,
                         "out": str(out / name / f"round_{r['round']:02d}")})
    return jobs, runs


def prepare(testset, dirs, out, settings, elements, overwrite: bool,
            exclude_training: bool, charge_model: bool = False,
            charge_correction: bool = True) -> dict:
    """Rank 0: every check before any work, then the output folders. Returns the plan."""
    from ..io.training_set import read_training_set

    testset, out = Path(testset), Path(out)
    test_comps, directories, ours = _check_paths(testset, dirs, out, overwrite)
    states = [_read_journal(d, shown) for d, shown in zip(directories, dirs)]
    elements, test_fracs = _check_elements(states, dirs, elements, test_comps, testset)
    test_sha = sha256_file(testset)
    jobs, runs = _jobs(directories, dirs, states, out, settings, elements,
                       read_training_set(testset))
    for job in jobs:
        source = {"format": FORMAT, "model": job["model"], "model_sha256": job["model_sha256"],
                  "testset": str(testset), "testset_sha256": test_sha,
                  "dft": _settings_record(job["settings"]), "elements": list(elements),
                  "charge_model": bool(charge_model),
                  "charge_corrected": charge_correction and (charge_model or job["has_charges"])}
        job["source"] = source
        job["cached"] = (not overwrite) and cache_hit(Path(job["out"]), source)
    if charge_model:
        check_fittable(jobs)
    make_folders(out / MANIFEST, {"format": FORMAT, "version": VERSION, "testset": str(testset),
                                  "testset_sha256": test_sha}, ours, jobs)
    return {"testset": str(testset), "testset_sha256": test_sha, "out": str(out),
            "elements": list(elements), "jobs": jobs, "runs": runs,
            "test_fractions": test_fracs, "test_compositions": test_comps,
            "exclude_training": bool(exclude_training), "charge_model": bool(charge_model),
            "charge_correction": bool(charge_correction)}


# ----------------------------------------------------------------------------- aggregation
def aggregate(plan: dict) -> list[dict]:
    """Rank 0: one row per (DIR, round) from the evaluate.json files of the plan."""
    from ..evaluation import JSON_NAME as EVAL_JSON
    from ..evaluation import summarise

    rows = []
    for job in plan["jobs"]:
        data = json.loads((Path(job["out"]) / EVAL_JSON).read_text())
        snaps = data["rows"]
        unknown = [r["key"] for r in snaps if r["key"] not in plan["test_fractions"]]
        if unknown:
            raise HpcdensError(f"{job['out']}/{EVAL_JSON} has snapshots {unknown} that the test "
                               "set does not; run again with --overwrite")
        if plan["exclude_training"]:
            used = [r for r in snaps if not _intersects(plan["test_fractions"][r["key"]],
                                                        job["training_fractions"])]
        else:
            used = list(snaps)
        s = summarise(used)
        max_e = s["max_abs_error_ha_per_atom"]
        rows.append({
            "strategy": job["strategy"], "name": job["name"], "round": job["round"],
            "n_training": len(job["training"]), "training": " ".join(job["training"]),
            "n_test": len(used), "n_test_total": len(snaps),
            "mean_abs_error_ha_per_atom": s["mean_abs_error_ha_per_atom"],
            "max_abs_error_ha_per_atom": max_e,
            "mean_nrmse": s["mean_nrmse"], "max_nrmse": s["max_nrmse"],
            "mean_relative_l1_percent": s["mean_relative_l1_percent"],
            "n_chemically_accurate": s["n_chemically_accurate"],
            "chemically_accurate": (None if max_e is None
                                    else bool(max_e <= en.CHEMICAL_ACCURACY_HA_PER_ATOM)),
            "model_sha256": job["model_sha256"], "evaluation": job["out"],
            "directory": job["directory"], "test_keys": [r["key"] for r in used]})
    return rows


# ----------------------------------------------------------------------------- driver
def run_compare(comm, testset, dirs, out, *, settings=None, elements=None,
                overwrite: bool = False, exclude_training: bool = False,
                plots: bool = True, energy_samples: int = 0,
                charge_model: bool = False, charge_correction: bool = True) -> dict:
    """Evaluate every trained round of the learn directories ``dirs`` on ``testset`` (all ranks
    of ``comm``; rounds with a valid cached evaluation in ``out`` are skipped) and write the
    comparison to ``out``. ``settings``: DFT settings of the energies (default: each model's
    recorded ``dft`` settings); ``elements``: the element order (default: the first journal's).
    ``overwrite``: evaluate every round again, and allow a non-empty ``out`` that is not a
    comparison. ``energy_samples``: weight samples per snapshot for the energy error bar
    (default 0: none). ``charge_model``: with the atomic-charge correction, fitted where a
    round's model has none (:func:`with_charge_model`); ``charge_correction`` False: every round
    without it, whether its model has a charge model or not. Returns {"rows", "evaluated",
    "reused", "copied" (rounds given the evaluation of an equal model), "out", ...} on
    every rank."""
    from ..evaluation import run_evaluate

    if charge_model and not charge_correction:
        raise InputError("--charge-model and --no-charge-correction contradict each other. Fix: "
                         "give one of them")
    plan = on_root(comm, prepare, testset, [str(d) for d in dirs], out, settings, elements,
                   overwrite, exclude_training, charge_model, charge_correction)
    evaluated, reused, copied = [], [], []
    done = {}   # the evaluation folder of each (model SHA-256, DFT settings) evaluated or cached
    for job in plan["jobs"]:
        tag = f"{job['name']}/round_{job['round']:02d}"
        if charge_model and not job["cached"]:
            job = with_charge_model(comm, job)
        twin = twin_key(job)
        if job["cached"]:
            reused.append(tag)
        elif twin in done:
            if comm.rank == 0:
                log.info("learn-compare: %s predicts as the model of %s (same weights and "
                         "settings): its evaluation is copied", tag, done[twin])
            on_root(comm, copy_evaluation, done[twin], job["out"], job["source"])
            copied.append(tag)
        else:
            if comm.rank == 0:
                log.info("learn-compare: evaluating %s (%s)", tag, job["model"])
            run_evaluate(comm, job["evaluated_model"], plan["testset"], job["out"],
                         settings=job["settings"], elements=plan["elements"], overwrite=True,
                         energy_samples=energy_samples, charge_correction=charge_correction)
            on_root(comm, write_json, Path(job["out"]) / SOURCE, job["source"])
            evaluated.append(tag)
        done.setdefault(twin, job["out"])

    def finish():
        out = Path(plan["out"])
        rows = aggregate(plan)
        result = {"format": FORMAT, "version": VERSION, "testset": plan["testset"],
                  "testset_sha256": plan["testset_sha256"], "elements": plan["elements"],
                  "exclude_training": plan["exclude_training"],
                  "charge_model": plan["charge_model"],
                  "charge_correction": plan["charge_correction"],
                  "training_match": "requested or realised composition equal within "
                                    f"{COMPOSITION_TOL:g} per element to a training "
                                    "composition, requested or realised",
                  "chemical_accuracy_ha_per_atom": en.CHEMICAL_ACCURACY_HA_PER_ATOM,
                  "units": {"energy": "Ha/atom, |free energy E - TS (Harris-Foulkes) - DFT|",
                            "nrmse": "dimensionless", "relative_l1": "percent"},
                  "runs": plan["runs"], "columns": list(COLUMNS), "rows": rows,
                  "to_chemical_accuracy": to_chemical_accuracy(rows, plan["runs"]),
                  "seed_spread": seed_spread(rows, plan["runs"]),
                  "evaluated": evaluated, "reused": reused, "copied": copied,
                  "out": str(out)}
        csv_name, json_name, png_name = output_names(plan["exclude_training"])
        write_csv(out / csv_name, rows, COLUMNS)
        write_json(out / json_name, result)
        if plots:
            plot_learning_curves(out / png_name, rows, plan["runs"], plan["exclude_training"])
        return result

    return on_root(comm, finish)
