"""The model file (``model.pt``): a trained network and its :class:`ModelRecord`, written by
:func:`save_model` and read, checked, by :func:`load_model` (the only reader and writer).

Layout on disk, unchanged since the first version (every model file written before loads): a
``torch.save`` of the dict

    {"format": "hpcdens-bnn", "version": 1,
     "architecture": BayesianNet.architecture(),   # n_in, hidden_layers, activation, priors
     "state_dict": {name: tensor},                 # weights and normalisation buffers
     "meta": ModelRecord.to_meta()}                # plain values (JSON-able)

``meta`` holds the flat keys a predictor needs (``n_neighbors``, ``species``, ``target``,
``n_samples``, ``sample_seed``, ``descriptor_version``; when the training snapshots determine
them ``dft`` and ``valence_electrons``) and, from ``hpcdens train``, ``features``, ``training``,
``config`` and ``hpcdens_version``. docs/commands/predict.md lists them.

An ensemble file (``hpcdens ensemble``, :func:`save_ensemble`) holds several such trainings:

    {"format": "hpcdens-bnn-ensemble", "version": 1,
     "members": [{"architecture", "state_dict", "meta"}, ...],   # each as in a model file
     "meta": the ensemble's ModelRecord}   # the first member's, N_s = sum, training.ensemble

:func:`read_predictor` reads both kinds; an ensemble's weight samples are every member's, pooled
by :func:`hpcdens.ensemble.pooled`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from .model_hash import prediction_hash, weights_hash

FORMAT = "hpcdens-bnn"
ENSEMBLE_FORMAT = "hpcdens-bnn-ensemble"
FORMAT_VERSION = 1
TARGETS = ("rho", "delta_rho")
REQUIRED = ("n_neighbors", "species", "target", "n_samples", "sample_seed", "descriptor_version")
"""Record keys every model file must carry."""
_RETRAIN = "Fix: retrain the model with 'hpcdens train' of this hpcdens version"
_OPTIONAL = ("dft", "valence_electrons", "features", "training", "config", "hpcdens_version",
             "calibration", "sad_radial", "charges")


@dataclass(frozen=True)
class ModelRecord:
    """Everything known about a trained network besides its weights.

    n_neighbors : M, neighbours per descriptor (the network's input width is 5M)
    species : sorted atomic numbers seen in training
    target : "rho" (the density) or "delta_rho" (rho - rho_SAD), e/Bohr^3
    n_samples, sample_seed : N_s, the weight samples of a prediction, and their seed
    descriptor_version : the descriptor version of the training data
    dft : the labels' DFT settings record ({backend, basis, pseudo, xc, mesh_spacing_bohr, ...};
        :func:`hpcdens.dft.settings_from_record` turns it into a DFTConfig), or None when the
        training snapshots do not share one
    valence_electrons : {Z: valence electrons}, or None when the labels do not determine it
    features : the full feature spec of the training data; training : provenance (data hash and
        files, split, metrics, history); config : the input file's text and sections;
        hpcdens_version : the version that trained it (each None when not recorded)
    calibration : the uncertainty calibration fitted on the validation snapshots by
        ``hpcdens calibrate`` (:mod:`hpcdens.calibration`), or None: uncalibrated
    sad_radial : a delta_rho model's radial atomic densities, {element: table of
        :meth:`hpcdens.sad.RadialDensity.to_table`}, from the labels' DFT backend at training,
        so that a prediction adds back the SAD its targets had without running that backend;
        None for rho models and models trained before it was stored
    charges : the atomic-charge model fitted by ``hpcdens charges``
        (:meth:`hpcdens.charges.ChargeModel.to_record`), or None: no charge correction
    """

    n_neighbors: int
    species: tuple
    target: str
    n_samples: int
    sample_seed: int
    descriptor_version: int
    dft: dict | None = None
    valence_electrons: dict | None = None
    features: dict | None = None
    training: dict | None = None
    config: dict | None = None
    hpcdens_version: str | None = None
    calibration: dict | None = None
    sad_radial: dict | None = None
    charges: dict | None = None

    @property
    def mesh_spacing_bohr(self) -> float | None:
        """The labels' grid spacing (Bohr): the default spacing of a prediction, or None."""
        return (self.dft or {}).get("mesh_spacing_bohr")

    def to_meta(self) -> dict:
        """The record as the plain ``meta`` dict of the file (valence keys as strings; None
        entries left out)."""
        meta = {"n_neighbors": self.n_neighbors, "species": list(self.species),
                "descriptor_version": self.descriptor_version, "target": self.target,
                "n_samples": self.n_samples, "sample_seed": self.sample_seed}
        meta.update((k, getattr(self, k)) for k in _OPTIONAL if getattr(self, k) is not None)
        if self.valence_electrons is not None:
            meta["valence_electrons"] = {str(z): n for z, n in self.valence_electrons.items()}
        return _plain(meta)

    @classmethod
    def from_meta(cls, meta, path="model") -> "ModelRecord":
        """The record of a file's ``meta`` (keys present, types right; :meth:`check` checks the
        values); ModelError naming the key and the fix."""
        if not isinstance(meta, dict):
            raise ModelError(f"model {path} has no metadata record. {_RETRAIN}")
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise ModelError(f"model {path} lacks metadata {missing} (needs {list(REQUIRED)}): it "
                             f"was not written by 'hpcdens train', or by an older version. "
                             f"{_RETRAIN}")
        try:
            return cls(
                n_neighbors=_integer(meta["n_neighbors"]), target=meta["target"],
                species=tuple(sorted(_integer(z) for z in meta["species"])),
                n_samples=_integer(meta["n_samples"]), sample_seed=_integer(meta["sample_seed"]),
                descriptor_version=_integer(meta["descriptor_version"]),
                dft=_mapping(meta.get("dft"), "dft"),
                valence_electrons=_valence(meta.get("valence_electrons")),
                features=_mapping(meta.get("features"), "features"),
                training=_mapping(meta.get("training"), "training"),
                config=_mapping(meta.get("config"), "config"),
                hpcdens_version=meta.get("hpcdens_version"),
                calibration=_mapping(meta.get("calibration"), "calibration"),
                sad_radial=_mapping(meta.get("sad_radial"), "sad_radial"),
                charges=_mapping(meta.get("charges"), "charges"))
        except (TypeError, ValueError) as err:
            raise ModelError(f"model {path}: malformed metadata ({err}); n_neighbors, n_samples, "
                             "sample_seed and descriptor_version must be integers, species a "
                             f"list of atomic numbers. {_RETRAIN}") from err

    def radial_densities(self, path="model") -> dict | None:
        """``sad_radial`` as {element: :class:`hpcdens.sad.RadialDensity`}, or None when the
        record has none; ModelError for a malformed table."""
        from ..sad import RadialDensity

        if not self.sad_radial:
            return None
        try:
            return {el: RadialDensity.from_table(el, t) for el, t in self.sad_radial.items()}
        except ValueError as err:
            raise ModelError(f"model {path}: sad_radial: {err}. {_RETRAIN}") from err

    def check(self, path="model", n_in: int | None = None) -> None:
        """ModelError unless the record is usable by this hpcdens (and, given ``n_in``, fits a
        network of that input width)."""
        from ..descriptors import DESCRIPTOR_VERSION

        if self.target not in TARGETS:
            raise ModelError(f"model {path}: target {self.target!r} unknown; allowed {TARGETS}")
        if self.n_neighbors < 1 or self.n_samples < 1 or not self.species:
            raise ModelError(f"model {path}: n_neighbors ({self.n_neighbors}) and n_samples "
                             f"({self.n_samples}) must be >= 1 and species non-empty")
        if n_in is not None and 5 * self.n_neighbors != n_in:
            raise ModelError(f"model {path}: n_neighbors M = {self.n_neighbors} does not match "
                             f"its input width {n_in} (descriptors have 5M numbers); the model "
                             "file is inconsistent")
        if self.descriptor_version != DESCRIPTOR_VERSION:
            raise ModelError(f"model {path} was trained on descriptor version "
                             f"{self.descriptor_version}; this hpcdens computes version "
                             f"{DESCRIPTOR_VERSION}. {_RETRAIN}")


def _integer(value) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _mapping(value, name: str) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be a table, got {type(value).__name__}")
    return value


def _valence(table) -> dict | None:
    if _mapping(table, "valence_electrons") is None:
        return None
    return {int(z): float(n) for z, n in table.items()}


def _plain(obj, where: str = "meta"):
    """``obj`` as plain Python (dict/list/str/number/bool/None); numpy values converted."""
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"{where} is a {type(obj).__name__}; model metadata must be plain values "
                    f"(dict, list, str, number, bool, None, numpy arrays)")


def save_model(path, net, record: ModelRecord) -> Path:
    """Write ``net`` (a :class:`hpcdens.bnn.BayesianNet`: architecture, weights, normalisation)
    and ``record`` to ``path`` with ``torch.save``: to a temporary name, then renamed. Returns
    the path. TypeError for a record that is not a :class:`ModelRecord` or holds non-plain
    values."""
    if not isinstance(record, ModelRecord):
        raise TypeError(f"save_model needs a ModelRecord, got {type(record).__name__}")
    return _write(path, {"format": FORMAT, "version": FORMAT_VERSION,
                         "architecture": net.architecture(),
                         "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                         "meta": record.to_meta()})


def _write(path, payload: dict) -> Path:
    """``torch.save`` of ``payload`` to a temporary name next to ``path``, then renamed."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _payload(path: Path) -> dict:
    """The checked dict of a model file (format marker and version)."""
    import torch

    if not path.is_file():
        raise ModelError(f"model file {path} does not exist. Fix: give the path of a trained "
                         "model")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises assorted errors for files that are not its own
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelError(f"{path} is not an hpcdens model file ({type(err).__name__}: "
                         f"{first}). Fix: give a model written by 'hpcdens train'") from err
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, ENSEMBLE_FORMAT):
        raise ModelError(f"{path} is not an hpcdens model file (no '{FORMAT}' marker). Fix: give "
                         "a model written by 'hpcdens train'")
    version = payload.get("version", 0)
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelError(f"{path} has model format version {version!r}; this hpcdens reads "
                         f"version {FORMAT_VERSION}. "
                         + ("Fix: upgrade hpcdens" if newer else _RETRAIN))
    return payload


def _network(payload: dict, path: Path):
    """(network in evaluation mode, checked ModelRecord) of one training's payload."""
    from ..bnn import BayesianNet

    try:
        arch = payload["architecture"]
        net = BayesianNet(arch["n_in"], arch["hidden_layers"], arch["activation"],
                          arch["prior_sigma"], arch["posterior_sigma0"])
        state = payload["state_dict"]
        net.to(next(iter(state.values())).dtype)
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, InputError, StopIteration) as err:
        raise ModelError(f"{path}: stored weights do not fit the stored architecture "
                         f"({type(err).__name__}: {err}). {_RETRAIN}") from err
    record = ModelRecord.from_meta(payload.get("meta"), path)
    record.check(path, net.n_in)
    return net.eval(), record


def load_model(path):
    """Read a file of :func:`save_model` -> (network in evaluation mode, its ModelRecord).

    Raises ModelError (an InputError) naming the problem and the fix: no such file, not a model
    file, an ensemble file (:func:`read_predictor` reads those), another format version, a record
    with missing or malformed keys, a descriptor version this hpcdens does not compute, weights
    that do not fit the stored architecture."""
    path = Path(path)
    payload = _payload(path)
    if payload["format"] == ENSEMBLE_FORMAT:
        raise ModelError(f"{path} is an ensemble of {len(payload.get('members', []))} trainings "
                         "('hpcdens ensemble'); this command works on one training. Fix: give "
                         "one of its members (docs/commands/ensemble.md)")
    return _network(payload, path)


@dataclass(frozen=True)
class Predictor:
    """A model ready to predict: the network (evaluation mode), its record, the record's N_s
    weight samples (float64, drawn once from its seed: the same on every rank and every run) and
    the file it came from (path, SHA-256). ``sample_mode`` says which samples a prediction uses
    (:func:`with_samples`); the record's ``n_samples`` is their number."""

    net: object
    record: ModelRecord
    samples: object
    path: str
    sha256: str
    sample_mode: str = "all"


def with_samples(predictor: Predictor, samples) -> Predictor:
    """The predictor with fewer network passes (the fast-sample mode of ``hpcdens predict``).

    samples : None or "all" (the model's N_s), an int K in 1..N_s (the first K of the N_s
        weight samples: the same weights as the full prediction's first K; the epistemic std
        from K samples, none for K = 1), or "mean" (the posterior-mean network: one pass, no
        epistemic std; a prediction file then has no ``epistemic_std`` field). InputError
        otherwise.
    """
    from dataclasses import replace

    from ..bnn import WeightSamples

    n_s = predictor.record.n_samples
    k = samples_drawn(samples, n_s)
    if k == 0:
        return replace(predictor, samples=predictor.net.mean_weights(), sample_mode="mean",
                       record=replace(predictor.record, n_samples=1))
    if k == n_s:
        return predictor
    s = predictor.samples
    first = WeightSamples(tuple(w[:k] for w in s.weights), tuple(b[:k] for b in s.biases), s.seed)
    return replace(predictor, samples=first, sample_mode=f"first {k} of {n_s}",
                   record=replace(predictor.record, n_samples=k))


def samples_drawn(samples, n_s: int) -> int:
    """How many of the N_s weight samples the fast-sample mode ``samples`` (of
    :func:`with_samples`) uses: N_s, K, or 0 for the posterior mean. InputError for another
    value."""
    from ..errors import InputError

    if samples is None or samples == "all":
        return n_s
    if samples == "mean":
        return 0
    try:
        k = int(samples)
    except (TypeError, ValueError):
        k = 0
    if str(samples) != str(k) or not 1 <= k <= n_s:
        raise InputError(f"--samples must be 'mean' or a number of weight samples from 1 to the "
                         f"model's N_s = {n_s}, got {samples!r}. Fix: e.g. --samples 5")
    return k


def read_predictor(path, samples=None) -> Predictor:
    """:func:`load_model` and the weight samples of a prediction (serial): all N_s, or those of
    the fast-sample mode ``samples`` (:func:`with_samples`), drawing only the ones it uses (the
    first K of the N_s are the same whether K or N_s are drawn; none for the posterior mean).
    An ensemble file gives the first member's network (normalisation, activation) and every
    member's samples pooled (:func:`hpcdens.ensemble.pooled`). Raises ModelError, InputError."""
    from .files import sha256_file

    path = Path(path)
    payload = _payload(path)
    if payload["format"] == ENSEMBLE_FORMAT:
        from ..ensemble import pooled

        members = [_network(m, f"{path} member {i}") for i, m in enumerate(payload["members"])]
        record = ModelRecord.from_meta(payload.get("meta"), path)
        if samples == "mean":
            raise InputError(f"{path} is an ensemble of {len(members)} trainings: it has no one "
                             f"posterior-mean network. Fix: --samples {len(members)} (one "
                             "weight sample of each member) or more")
        drawn = pooled([(net, net.draw_weight_samples(r.n_samples, r.sample_seed))
                        for net, r in members])
        predictor = Predictor(members[0][0], record, drawn, str(path), sha256_file(path))
        return with_samples(predictor, samples)
    net, record = _network(payload, path)
    n = samples_drawn(samples, record.n_samples)
    drawn = net.draw_weight_samples(n, record.sample_seed) if n else None   # mean: with_samples
    return with_samples(Predictor(net, record, drawn, str(path), sha256_file(path)), samples)


_SHARED = ("n_neighbors", "species", "target", "descriptor_version", "dft", "valence_electrons",
           "sad_radial")
"""Record keys on which the members of an ensemble must agree (what a prediction uses)."""


def save_ensemble(path, members) -> ModelRecord:
    """Bundle the model files ``members`` (two or more, from ``hpcdens train`` on the same kind of
    data: the same network, descriptors, species, target and DFT settings) into one ensemble file
    at ``path`` (temporary name, then renamed). Its record is the first member's with N_s the sum
    of theirs, no calibration (the members' validation snapshots are not held out from each other)
    and ``training = {"ensemble": [each member's path, weights SHA-256, N_s, sample seed, training
    seed and validation metrics]}``; returns that record. ModelError naming the member and the
    key that differ."""

    from dataclasses import replace

    paths = [Path(p) for p in members]
    if len(paths) < 2:
        raise InputError(f"an ensemble needs two or more model files, got {len(paths)}. Fix: "
                         "train the same input with other [train] seed values and list them all")
    parts = [_payload(p) for p in paths]
    for p, part in zip(paths, parts):
        if part["format"] == ENSEMBLE_FORMAT:
            raise ModelError(f"{p} is itself an ensemble. Fix: list its member model files")
    records = [_network(part, p)[1] for p, part in zip(paths, parts)]
    for p, part, rec in zip(paths[1:], parts[1:], records[1:]):
        diff = [k for k in _SHARED if getattr(rec, k) != getattr(records[0], k)]
        if part["architecture"] != parts[0]["architecture"]:
            diff.insert(0, "architecture")
        if diff:
            raise ModelError(f"{p} differs from {paths[0]} in {diff}: the members of an ensemble "
                             "must be trainings of one input with other seeds. Fix: leave it out, "
                             "or retrain it with the first member's settings")
    listing = [{"path": str(p), "weights_sha256": weights_sha256(p), "n_samples": r.n_samples,
                "sample_seed": r.sample_seed,
                "train_seed": (r.training or {}).get("seed"),
                "validation": (r.training or {}).get("validation")}
               for p, r in zip(paths, records)]
    record = replace(records[0], n_samples=sum(r.n_samples for r in records), calibration=None,
                     training={"ensemble": listing})
    _write(path, {"format": ENSEMBLE_FORMAT, "version": FORMAT_VERSION, "meta": record.to_meta(),
                  "members": [{k: part[k] for k in ("architecture", "state_dict", "meta")}
                              for part in parts]})
    return record


def weights_sha256(path) -> str:
    """SHA-256 of a model file's architecture and tensors, not of its record
    (:func:`hpcdens.io.model_hash.weights_hash`): equal for equal weights whatever the wall times
    and paths recorded with them."""
    return weights_hash(_payload(Path(path))).hexdigest()


def prediction_sha256(path) -> str:
    """SHA-256 of what a prediction with a model file depends on: its weights and its record but
    for what only documents the training (:func:`hpcdens.io.model_hash.prediction_hash`)."""
    return prediction_hash(_payload(Path(path))).hexdigest()
