"""Constants that the command line shows as defaults, choices or in help texts, kept free of imports
so that building the ``hpcdens`` parser (``hpcdens --help``) loads no numerical library. The
modules that own them (named per constant) import them from here and use them as before."""

# ----------------------------------------------------------------- hpcdens.grid
DEFAULT_CHUNK_POINTS = 8192
"""Grid points per streamed chunk, in training and prediction alike (about 18 MB of float64
descriptors at M = 55); results do not depend on it, memory does."""

# ----------------------------------------------------------------- hpcdens.energy
#: 1 kcal/mol: the paper's "chemical accuracy" in Ha/atom.
CHEMICAL_ACCURACY_HA_PER_ATOM = 1.6e-3
DEFAULT_FIELD = "rho_normalised"
"""Density dataset of a prediction file whose Harris-Foulkes energy ``hpcdens energy`` computes:
Eq. 9's, with the atomic-charge correction where the model has a charge model (docs/charges.md)."""

# ----------------------------------------------------------------- hpcdens.io
#: Decimals of voxel vectors and atom positions (Bohr) in written cube files (hpcdens.io.cube).
LENGTH_DECIMALS = 12
EXPORT_FIELD = "rho_normalised"
"""The field ``hpcdens export`` writes unless told otherwise (hpcdens.io.prediction)."""

# ----------------------------------------------------------------- hpcdens.parallel.block
DEFAULT_PRECISION = "float32"
"""Precision of the network pass of a grid prediction (``hpcdens predict``, evaluate, bench):
float32 is about twice as fast as float64 and agrees with it to about 1e-6 of the target's spread
(moments are accumulated in float64 either way; docs/model.md)."""
PRECISIONS = ("float32", "float64")

PHASES = ("setup", "halo", "descriptors", "network", "sad", "reduce", "charges", "write")
"""Timed phases of a prediction; the file stores the maximum over ranks of each (seconds)."""
