"""Exception hierarchy of hpcdens.

Every error a user can cause by what they give us (an input file, a structure file, a command-line
option) derives from :class:`InputError`; the command-line interface turns it into one message and
exit code 2, without a traceback. Messages carry the offending value, what is allowed, and the fix.
"""


class HpcdensError(Exception):
    """Base class of all hpcdens errors."""


class InputError(HpcdensError, ValueError):
    """Raised before any work starts when user input is invalid (exit code 2 in the CLI)."""


class ConfigError(InputError):
    """Raised when an input (TOML) file has a missing, unknown, mistyped or out-of-range key."""


class CompositionError(InputError):
    """Raised when a composition is malformed: unknown element, negative or missing fractions,
    fractions that do not sum to 1."""


class StructureError(InputError):
    """Raised when a structure cannot be built or read: unreadable or empty file, atoms closer than
    the allowed minimum distance, vacancy counts or segregation bins that do not fit the cell."""


class ModelError(InputError):
    """Raised when a model file cannot be used (missing, not an hpcdens model, another format
    version, incomplete or malformed record, weights that do not fit the stored architecture), or
    when weight samples do not fit a model."""


class DFTSetupError(HpcdensError):
    """Raised before a DFT run when the backend cannot be set up (missing binary, unknown basis or
    pseudopotential for an element)."""


class DFTInputError(DFTSetupError, InputError):
    """A DFT setting of the input file that cannot work, found before any DFT runs (an element the
    basis or pseudopotential family lacks, a mesh too coarse for the atomic densities): an input
    error (exit code 2) that is also a DFT set-up error."""


class DFTFailed(HpcdensError):
    """Raised when a DFT run started but did not produce a usable result (crash, no output)."""


class SCFNotConverged(DFTFailed):
    """Raised when the SCF stopped without reaching its tolerance."""


class ParallelIOError(HpcdensError):
    """Raised when parallel HDF5 is unavailable or a collective write fails."""
