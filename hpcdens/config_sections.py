"""The sections of an input file: one frozen dataclass each, validated in ``__post_init__`` with
messages that name the key, the value, what is allowed and the fix. :mod:`hpcdens.config` reads
the TOML file into them. Units are in the key names (``mesh_spacing_bohr``, ...).
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field

from .errors import ConfigError
from .grid import DEFAULT_CHUNK_POINTS, MAX_SPACING_BOHR

LATTICES = ("diamond", "fcc", "bcc")
SNAPSHOT_METHODS = ("none", "rattle", "md")
MD_CALCULATORS = ("emt", "sevenn", "chgnet")
BACKENDS = ("pyscf", "sparc")
TESSELLATIONS = ("T1", "T2", "T4")
TARGETS = ("rho", "delta_rho")
LEARN_STRATEGIES = ("bayesian", "tessellation", "random")
LEARN_SCORES = ("density", "energy")
LEARN_PICKS = ("top", "separated")
#: the named choices of [train] kl_divisor (a positive integer N is the fourth)
KL_DIVISORS = ("sampled", "grid", "atoms")

# Settings added after runs had been journaled and checkpointed: fingerprints leave them out while
# they are at these defaults (:func:`without_later_defaults`), so that those runs still resume.
LATER_DEFAULTS = {"train": {"density_fraction": 0.0, "kl_divisor": "sampled", "lr_patience": 0,
                            "nll_beta": 0.0, "charge_model": None},
                  "learn": {"score": "density", "pick": "top"}}
CUBIC_SITES = {"diamond": 8, "fcc": 4, "bcc": 2}
PRIMITIVE_SITES = {"diamond": 2, "fcc": 1, "bcc": 1}

log = logging.getLogger(__name__)

#: Default lattice constants (Angstrom) per lattice, used by Vegard's law when the input file gives
#: none for an element: diamond Si, Ge, alpha-Sn (experiment); fcc/bcc values of the 3d metals and Al
#: near their alloys' measured constants (CrFeCoNi fcc ~3.57 A, AlCrFeCoNi bcc ~2.88 A).
DEFAULT_LATTICE_CONSTANTS = {
    "diamond": {"Si": 5.431, "Ge": 5.658, "Sn": 6.489, "C": 3.567},
    "fcc": {"Al": 4.05, "Cr": 3.60, "Fe": 3.60, "Co": 3.54, "Ni": 3.52, "Cu": 3.615},
    "bcc": {"Al": 3.24, "Cr": 2.88, "Fe": 2.87, "Co": 2.82, "Ni": 2.80},
}


def _fail(section: str, key: str, value, problem: str, fix: str):
    shown = f" = {value!r}" if value is not None else ""
    raise ConfigError(f"[{section}] {key}{shown}: {problem}. Fix: {fix}")


def without_later_defaults(section: str, values: dict) -> dict:
    """``values`` (a section's settings) less those of ``LATER_DEFAULTS[section]`` that are at
    their defaults: what a fingerprint hashes."""
    later = LATER_DEFAULTS.get(section, {})
    return {k: v for k, v in values.items() if not (k in later and v == later[k])}


def _require(ok: bool, section: str, key: str, value, problem: str, fix: str):
    if not ok:
        _fail(section, key, value, problem, fix)


def _one_of(section: str, key: str, value: str, allowed: tuple[str, ...]):
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        _fail(section, key, value, f"must be one of {', '.join(allowed)}", f"{hint}use one of those")


@dataclass(frozen=True)
class SystemConfig:
    """``[system]``: the alloy and its parent lattice.

    elements : the species of the alloy, e.g. ["Si", "Ge", "Sn"] (required).
    lattice : "diamond", "fcc" or "bcc".
    lattice_constants_angstrom : per-element lattice constants (Angstrom) mixed by Vegard's law;
        elements left out take DEFAULT_LATTICE_CONSTANTS[lattice].
    supercell : repetitions of the conventional cubic cell (of the primitive cell if ``primitive``).
    primitive : use the primitive, non-orthogonal cell instead of the conventional cubic one.
    structure_file : optional ASE-readable file whose cell and sites replace the built lattice.
    """

    SECTION = "system"
    elements: tuple[str, ...]
    lattice: str = "diamond"
    lattice_constants_angstrom: dict[str, float] = field(default_factory=dict)
    supercell: tuple[int, ...] = (1, 1, 1)
    primitive: bool = False
    structure_file: str | None = None

    def __post_init__(self):
        from ase.data import chemical_symbols

        s = self.SECTION
        _require(len(self.elements) > 0, s, "elements", list(self.elements), "is empty",
                 'list the species, e.g. elements = ["Si", "Ge"]')
        for el in self.elements:
            if el not in chemical_symbols[1:]:
                close = difflib.get_close_matches(el, chemical_symbols[1:], n=1)
                hint = f"did you mean {close[0]!r}?" if close else "use chemical symbols such as Si, Ge, Sn"
                _fail(s, "elements", list(self.elements), f"unknown element {el!r}", hint)
        _require(len(set(self.elements)) == len(self.elements), s, "elements", list(self.elements),
                 "lists an element twice", "list each element once")
        _one_of(s, "lattice", self.lattice, LATTICES)
        for el, a in self.lattice_constants_angstrom.items():
            _require(el in self.elements, s, "lattice_constants_angstrom", el,
                     f"is not one of elements {list(self.elements)}", "remove it or add it to elements")
            _require(a > 0 and math.isfinite(a), s, f"lattice_constants_angstrom.{el}", a,
                     "must be a positive length in Angstrom", "give e.g. 5.431 for Si")
        missing = [el for el in self.elements if el not in self.lattice_constants()]
        if missing and self.structure_file is None:
            _fail(s, "lattice_constants_angstrom", None,
                  f"no lattice constant known for {missing} on a {self.lattice} lattice",
                  f"add {{ {missing[0]} = <a in Angstrom> }} to lattice_constants_angstrom")
        _require(len(self.supercell) == 3 and all(n >= 1 for n in self.supercell), s, "supercell",
                 list(self.supercell), "must be three integers >= 1", "write e.g. supercell = [2, 2, 2]")

    def n_sites(self) -> int | None:
        """Lattice sites of the built cell (None when the sites come from ``structure_file``)."""
        if self.structure_file is not None:
            return None
        per_cell = (PRIMITIVE_SITES if self.primitive else CUBIC_SITES)[self.lattice]
        return per_cell * math.prod(self.supercell)

    def lattice_constants(self) -> dict[str, float]:
        """Per-element lattice constants (Angstrom): the file's values over the defaults."""
        known = {**DEFAULT_LATTICE_CONSTANTS.get(self.lattice, {}), **self.lattice_constants_angstrom}
        return {el: known[el] for el in self.elements if el in known}


@dataclass(frozen=True)
class CompositionsConfig:
    """``[compositions]``: which compositions to build. At least one source must be given.

    list : explicit compositions, e.g. ["Si0.5Ge0.5", "Si1"].
    tessellation : "T1", "T2" or "T4" (the paper's tessellation levels).
    grid_resolution : all compositions k_i / grid_resolution (0 = none).
    random : number of random compositions (uniform on the simplex), drawn with ``seed``.
    """

    SECTION = "compositions"
    list: tuple[str, ...] = ()
    tessellation: str | None = None
    grid_resolution: int = 0
    random: int = 0
    seed: int = 0

    def __post_init__(self):
        s = self.SECTION
        if self.tessellation is not None:
            _one_of(s, "tessellation", self.tessellation, TESSELLATIONS)
        _require(self.grid_resolution >= 0, s, "grid_resolution", self.grid_resolution,
                 "must be >= 0", "use 0 for none or e.g. 4")
        _require(self.random >= 0, s, "random", self.random, "must be >= 0", "use 0 for none")

    def requested(self) -> bool:
        """Whether any source of compositions is given."""
        return bool(self.list) or self.tessellation is not None or self.grid_resolution > 0 \
            or self.random > 0


@dataclass(frozen=True)
class SnapshotConfig:
    """``[snapshots]``: atomic configurations per composition.

    per_composition : snapshots (random decorations, each seeded) per composition.
    method : "none" (ideal sites), "rattle" (Gaussian displacements) or "md" (Langevin MD).
    rattle_stdev_angstrom : standard deviation of rattle displacements (Angstrom).
    md_calculator : "emt" (ASE's EMT; tests), "sevenn" (SevenNet-0) or "chgnet" (CHGNet 0.3.0):
        universal machine-learned potentials whose weights ship with the ``mlip`` extra
        (``HPCDENS_EXTRAS=mlip bash launch/install.sh``); see :mod:`hpcdens.md`.
    temperature_kelvin : MD temperature (K).
    md_timestep_fs, md_steps_between : MD time step (fs) and steps between snapshots.
    vacancies : atoms removed at random from each snapshot.
    divacancy : remove a nearest-neighbour pair of atoms.
    checkerboard_bins : 0 = off; 2 or 3 = segregate the cell into bins^3 blocks (the paper's
        Fig. 10 and generalisation cells) with ``checkerboard_compositions``: 2 to bins^3 - 1 of
        them, block (i, j, k) taking number (i+j+k) % m, or exactly bins^3, one per block in C
        order of (i, j, k) (a warning names face-sharing blocks given the same composition).
    seed : master seed; every (composition, snapshot) gets its own stream derived from it.
    """

    SECTION = "snapshots"
    per_composition: int = 1
    method: str = "rattle"
    rattle_stdev_angstrom: float = 0.05
    md_calculator: str = "emt"
    temperature_kelvin: float = 300.0
    md_timestep_fs: float = 2.0
    md_steps_between: int = 10
    vacancies: int = 0
    divacancy: bool = False
    checkerboard_bins: int = 0
    checkerboard_compositions: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        s = self.SECTION
        _one_of(s, "method", self.method, SNAPSHOT_METHODS)
        _one_of(s, "md_calculator", self.md_calculator, MD_CALCULATORS)
        _require(self.rattle_stdev_angstrom >= 0, s, "rattle_stdev_angstrom",
                 self.rattle_stdev_angstrom, "must be >= 0 Angstrom", "use e.g. 0.05")
        _require(self.temperature_kelvin >= 0, s, "temperature_kelvin", self.temperature_kelvin,
                 "must be >= 0 K", "use e.g. 300")
        _require(self.md_timestep_fs > 0, s, "md_timestep_fs", self.md_timestep_fs, "must be > 0 fs",
                 "use e.g. 2.0")
        for key, example in (("per_composition", "2"), ("md_steps_between", "10")):
            _require(getattr(self, key) >= 1, s, key, getattr(self, key), "must be >= 1",
                     f"use e.g. {example}")
        _require(self.vacancies >= 0, s, "vacancies", self.vacancies, "must be >= 0", "use 0 for none")
        _require(self.checkerboard_bins in (0,) or self.checkerboard_bins >= 2, s, "checkerboard_bins",
                 self.checkerboard_bins, "must be 0 (off) or >= 2", "use 2 or 3 as in the paper")
        if self.checkerboard_bins:
            self._check_checkerboard_compositions()

    def _check_checkerboard_compositions(self):
        n_blocks, m = self.checkerboard_bins**3, len(self.checkerboard_compositions)
        _require(2 <= m <= n_blocks, self.SECTION, "checkerboard_compositions",
                 list(self.checkerboard_compositions),
                 f"gives {m} composition(s) for checkerboard_bins = {self.checkerboard_bins}; "
                 f"needs 2 to {n_blocks - 1} (block (i, j, k) takes number (i+j+k) % m) or "
                 f"exactly {n_blocks} (one per block, C order of (i, j, k))",
                 f"list {n_blocks} compositions, one per block, or e.g. two: "
                 f'checkerboard_compositions = ["Si0.8Ge0.2", "Si0.2Ge0.8"]')
        if m == n_blocks:
            from .segregation import warn_equal_face_neighbours

            warn_equal_face_neighbours(self.checkerboard_bins, self.checkerboard_compositions)


@dataclass(frozen=True)
class DFTConfig:
    """``[dft]``: the DFT backend and its settings.

    backend : "pyscf" (embedded default) or "sparc" (production; binary from $ASE_SPARC_COMMAND).
    xc : exchange-correlation functional ("PBE").
    mesh_spacing_bohr : target real-space grid spacing (Bohr); the grid is rounded up to odd n_i.
    smearing_kelvin : Fermi-Dirac electronic temperature (K); 631.554 K = 0.002 Ha as in the paper.
    basis, pseudo : PySCF basis family and GTH pseudopotentials (ignored by SPARC, which uses psp8).
    scf_tol : SCF convergence tolerance (PySCF: energy change in Ha; SPARC: TOL_SCF).
    max_scf_cycles : SCF iteration limit; an SCF that hits it is recorded as failed.
    sparc_psp_dir : directory of psp8 files (default: the ones shipped by SPARC-X-API).
    ranks_per_task : MPI ranks per DFT task (SPARC runs its own mpirun with this many ranks).
    """

    SECTION = "dft"
    backend: str = "pyscf"
    xc: str = "PBE"
    mesh_spacing_bohr: float = 0.4
    smearing_kelvin: float = 631.554
    basis: str = "gth-szv-molopt-sr"
    pseudo: str = "gth-pbe"
    scf_tol: float = 1e-7
    max_scf_cycles: int = 100
    sparc_psp_dir: str | None = None
    ranks_per_task: int = 1

    def __post_init__(self):
        s = self.SECTION
        _one_of(s, "backend", self.backend, BACKENDS)
        _one_of(s, "xc", self.xc.upper(), ("PBE",))
        _require(0 < self.mesh_spacing_bohr <= MAX_SPACING_BOHR, s, "mesh_spacing_bohr",
                 self.mesh_spacing_bohr, f"must be > 0 and <= {MAX_SPACING_BOHR} Bohr",
                 "use e.g. 0.4 (SiGeSn) or 0.2 (CrFeCoNi)")
        _require(self.smearing_kelvin >= 0, s, "smearing_kelvin", self.smearing_kelvin,
                 "must be >= 0 K", "use 631.554 as in the paper")
        _require(self.scf_tol > 0, s, "scf_tol", self.scf_tol, "must be > 0", "use e.g. 1e-7")
        for key, fix in (("max_scf_cycles", "use e.g. 100"),
                         ("ranks_per_task", "use 1, or the ranks one SPARC run should use")):
            _require(getattr(self, key) >= 1, s, key, getattr(self, key), "must be >= 1", fix)


@dataclass(frozen=True)
class DescriptorConfig:
    """``[descriptors]``: the body-attached-frame descriptors.

    n_neighbors : M, the nearest atoms (periodic images included) per grid point (paper: ~55).
    chunk_points : grid points per streamed chunk (bounds memory).
    """

    SECTION = "descriptors"
    n_neighbors: int = 55
    chunk_points: int = DEFAULT_CHUNK_POINTS

    def __post_init__(self):
        s = self.SECTION
        _require(self.n_neighbors >= 1, s, "n_neighbors", self.n_neighbors, "M must be >= 1",
                 "use about 55 as in the paper")
        _require(self.chunk_points >= 1, s, "chunk_points", self.chunk_points, "must be >= 1",
                 "use e.g. 8192")


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the Bayesian neural network.

    target : "rho" or "delta_rho" (rho - rho_SAD; better for semi-core metals).
    hidden_layers : widths of the hidden layers.
    n_samples : N_s, Monte-Carlo weight samples for mean and variances (Eq. 7-8).
    prior_sigma : standard deviation of the Gaussian weight prior.
    seed : seed of the weight samples (the same on every rank).
    """

    SECTION = "model"
    target: str = "rho"
    hidden_layers: tuple[int, ...] = (128, 128, 64)
    n_samples: int = 30
    prior_sigma: float = 1.0
    seed: int = 0

    def __post_init__(self):
        s = self.SECTION
        _one_of(s, "target", self.target, TARGETS)
        _require(all(w >= 1 for w in self.hidden_layers) and self.hidden_layers, s, "hidden_layers",
                 list(self.hidden_layers), "must be one or more widths >= 1", "use e.g. [128, 128, 64]")
        _require(self.n_samples >= 1, s, "n_samples", self.n_samples, "N_s must be >= 1", "use 30")
        _require(self.prior_sigma > 0, s, "prior_sigma", self.prior_sigma, "must be > 0", "use 1.0")


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: fitting the network.

    points_per_snapshot : grid points drawn at random from each snapshot (0 = all of them).
    validation_fraction : fraction of the snapshots held out for validation (split by snapshot,
        never by grid point; at least one snapshot when there are two or more).
    epochs : maximum passes over the training points.
    batch_size : grid points per optimiser step (per rank).
    learning_rate : Adam step size.
    patience : stop after this many epochs without a better validation loss.
    seed : seed of the point subsampling, the split, the initial weights and the minibatches.
    density_fraction : fraction of each training snapshot's points drawn with probability
        proportional to its SAD density (so near the nuclei), the rest uniformly; validation
        points are always uniform. 0 = all uniform.
    kl_divisor : N of the loss KL/N + mean NLL: "sampled" (the drawn training points), "grid"
        (every grid point of the training snapshots, the ELBO of the full grids that the sample
        estimates; the posterior then does not depend on points_per_snapshot), "atoms" (the atoms
        of the training snapshots: one datum per atomic environment, for grid points that are far
        from independent) or a positive integer N.
    lr_patience : halve the learning rate every lr_patience epochs without improvement (0: never)
    nll_beta : beta-NLL (docs/model.md): each training point's NLL term weighted by sigma^(2 beta),
        normalised over the minibatch; 0 = Eq. 8 (the paper's loss). Validation uses Eq. 8.
    charge_model : fit the atomic-charge model after training (docs/charges.md); None: on
    charge_shells_bohr : radii of its radial shells (docs/charges.md, "Radial shells"); []: atoms
    """

    SECTION = "train"
    points_per_snapshot: int = 20000
    validation_fraction: float = 0.2
    epochs: int = 200
    batch_size: int = 1024
    learning_rate: float = 1e-3
    patience: int = 20
    seed: int = 0
    density_fraction: float = 0.0
    kl_divisor: str | int = "sampled"
    lr_patience: int = 0
    nll_beta: float = 0.0
    charge_model: bool | None = None
    charge_shells_bohr: tuple[float, ...] = ()

    def __post_init__(self):
        s = self.SECTION
        _require(self.points_per_snapshot >= 0, s, "points_per_snapshot", self.points_per_snapshot,
                 "must be >= 0", "use 0 for every grid point or e.g. 20000")
        _require(0 <= self.validation_fraction < 1, s, "validation_fraction",
                 self.validation_fraction, "must be in [0, 1)", "use e.g. 0.2")
        for key, example in (("epochs", "200"), ("batch_size", "1024"), ("patience", "20")):
            _require(getattr(self, key) >= 1, s, key, getattr(self, key), "must be >= 1",
                     f"use e.g. {example}")
        _require(self.learning_rate > 0, s, "learning_rate", self.learning_rate, "must be > 0",
                 "use e.g. 1e-3")
        _require(0 <= self.density_fraction <= 1, s, "density_fraction", self.density_fraction,
                 "must be in [0, 1]", "use 0 (uniform) or e.g. 0.5")
        if isinstance(self.kl_divisor, int) and not isinstance(self.kl_divisor, bool):
            _require(self.kl_divisor >= 1, s, "kl_divisor", self.kl_divisor, "must be >= 1",
                     'use a positive integer N or one of "sampled", "grid", "atoms"')
        else:
            _one_of(s, "kl_divisor", self.kl_divisor, KL_DIVISORS)
        _require(self.lr_patience >= 0, s, "lr_patience", self.lr_patience, ">= 0", "use 0 or 5")
        _require(0 <= self.nll_beta <= 1, s, "nll_beta", self.nll_beta, "must be in [0, 1]",
                 "use 0 (the paper's loss) or 0.5")
        r = self.charge_shells_bohr
        _require(all(b > a for a, b in zip((0.0, *r), r)), s, "charge_shells_bohr", list(r),
                 "must increase from above 0 Bohr", "use e.g. [0.3, 0.6, 1.0, 1.6]")


@dataclass(frozen=True)
class LearnConfig:
    """``[learn]``: ``hpcdens learn``, active learning over the composition space.

    strategy : "bayesian" (highest epistemic uncertainty), "tessellation" (T1 -> T2 -> T4) or
        "random" (seeded picks), all starting from the pure elements (T1).
    candidate_resolution : candidates are the simplex grid k_i / candidate_resolution.
    per_round : compositions labelled per round.
    max_rounds : models trained at most (round 1 trains on the pure elements).
    max_compositions : budget of training compositions (0 = no limit).
    score : what the bayesian strategy ranks candidates by: "density", the paper's mean epistemic
        std over ``score_points`` grid points (e/Bohr^3), or "energy", the std over the N_s
        weight samples of the Harris-Foulkes energies of the sample densities (Ha/atom; a
        prediction of the whole DFT grid and N_s Kohn-Sham steps per structure).
    uncertainty_threshold : stop when the largest score is below this (in its unit; 0 = never).
    pick : how the bayesian strategy takes ``per_round`` candidates from the scores: "top", the
        highest scores; "separated", each the highest that is not a grid neighbour (one step of
        1/candidate_resolution) of an earlier pick of the round, then the rest by score.
    score_structures : structures per candidate used for scoring.
    score_points : random grid points per structure used for the density score.
    seed : seed of the scoring points and of the random strategy.
    """

    SECTION = "learn"
    strategy: str = "bayesian"
    candidate_resolution: int = 4
    per_round: int = 1
    max_rounds: int = 3
    max_compositions: int = 0
    uncertainty_threshold: float = 0.0
    score: str = "density"
    pick: str = "top"
    score_structures: int = 1
    score_points: int = 2000
    seed: int = 0

    def __post_init__(self):
        s = self.SECTION
        _one_of(s, "strategy", self.strategy, LEARN_STRATEGIES)
        _one_of(s, "score", self.score, LEARN_SCORES)
        _one_of(s, "pick", self.pick, LEARN_PICKS)
        for key, example in (("candidate_resolution", "4 or 8"), ("per_round", "3"),
                             ("max_rounds", "3"), ("score_structures", "2"),
                             ("score_points", "2000")):
            value = getattr(self, key)
            _require(value >= 1, s, key, value, "must be >= 1", f"use e.g. {example}")
        _require(self.max_compositions >= 0, s, "max_compositions", self.max_compositions,
                 "must be >= 0", "use 0 for no limit or e.g. 20")
        _require(self.uncertainty_threshold >= 0, s, "uncertainty_threshold",
                 self.uncertainty_threshold, "must be >= 0", "use 0 to never stop on it")


@dataclass(frozen=True)
class OutputConfig:
    """``[output]``: where results go.

    directory : output directory, relative to the working directory; created if its parent exists.
    """

    SECTION = "output"
    directory: str = "runs/hpcdens"
