"""The psp8 pseudopotential files of the SPARC backend: which file an element uses, its valence
charge and its atomic valence density.

Files: ``settings.sparc_psp_dir``, or the psp8 set shipped with SPARC-X-API when unset
(``$SPARC_PSP_PATH`` is deliberately not consulted, so a run depends only on its settings); one
``<Z>_<symbol>_*.psp8`` file per element, chosen by SPARC-X-API's ``infer_pseudo_path``.

psp8 (ONCVPSP) layout used here: line 2 holds ``zatom zion pspd`` (zion: valence electrons);
line 3 ``pspcod pspxc lmax lloc mmax r2well``; line 4 ``rchrg fchrg qchrg``; line 6
``extension_switch`` (1 or 3: the valence density is included; 2 or 3: spin-orbit projectors).
Then blocks of ``mmax`` rows ``i r ...`` (i = 1..mmax) in this order: one per angular momentum
l = 0..lmax other than lloc (projectors), the local potential, with spin-orbit one per l = 1..lmax
other than lloc, the model core charge when fchrg > 0, and the valence density, whose third
column is 4 pi rho(r). This is what SPARC's ``readfiles.c`` reads (``rhoIsoAtom = column 3 /
(4 pi)``) and superposes (cut beyond the last radial point, then scaled to N_e over the whole cell)
for its initial guess.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np

from ..errors import DFTSetupError
from ..sad import RadialDensity, radial_integral, tabulate

#: extension_switch values whose files carry the valence density / spin-orbit projectors.
_WITH_DENSITY = (1, 3)
_WITH_SPIN_ORBIT = (2, 3)


def psp_dir(settings) -> Path:
    """The psp8 directory of ``settings``: ``settings.sparc_psp_dir`` or SPARC-X-API's set."""
    if settings.sparc_psp_dir:
        return Path(settings.sparc_psp_dir)
    from sparc.common import psp_dir as bundled

    return Path(str(bundled))


def find_psp(symbol: str, directory: Path) -> Path:
    """The psp8 file of element ``symbol`` in ``directory``; :class:`DFTSetupError` naming the fix
    when the directory does not exist or has no single file for it."""
    from sparc.sparc_parsers.pseudopotential import infer_pseudo_path

    if not directory.is_dir():
        raise DFTSetupError(f"dft.sparc_psp_dir = {str(directory)!r} is not a directory; give the "
                            "directory of your psp8 files or leave it unset for SPARC-X-API's set")
    try:
        with contextlib.redirect_stdout(None):
            return Path(infer_pseudo_path(symbol, directory))
    except Exception as err:  # SPARC-X-API raises its own exception classes
        raise DFTSetupError(f"no usable psp8 pseudopotential for {symbol} in {directory} ({err}); "
                            "put exactly one <Z>_<symbol>_*.psp8 file for it there or set "
                            "dft.sparc_psp_dir") from err


def pseudopotentials(symbols, settings) -> dict[str, Path]:
    """{element: psp8 file} for the distinct elements of ``symbols`` (sorted)."""
    directory = psp_dir(settings)
    return {s: find_psp(s, directory) for s in sorted(set(symbols))}


def zion(path: Path) -> float:
    """Valence electrons of a psp8 file: the second number of its second line."""
    with open(path) as f:
        f.readline()
        return float(f.readline().split()[1])


def _header(lines: list[str], path: Path) -> dict:
    try:
        zatom, charge = (float(x) for x in lines[1].split()[:2])
        _, _, lmax, lloc, mmax = (int(x) for x in lines[2].split()[:5])
        fchrg = float(lines[3].split()[1])
        switch = int(lines[5].split()[0])
    except (IndexError, ValueError) as err:
        raise DFTSetupError(f"{path} is not a psp8 file (header: {err}); use ONCVPSP psp8 files, "
                            "e.g. SPARC-X-API's set (leave dft.sparc_psp_dir unset)") from err
    return {"zatom": zatom, "zion": charge, "lmax": lmax, "lloc": lloc, "mmax": mmax,
            "fchrg": fchrg, "extension_switch": switch}


def _radial_blocks(lines: list[str], mmax: int) -> list[np.ndarray]:
    """Every run of ``mmax`` rows numbered 1..mmax, as (mmax, columns - 1) arrays (index dropped);
    other lines (block headers, the appended generator input) end a run."""
    blocks, rows = [], []
    for line in lines:
        tokens = line.split()
        try:
            index, values = int(tokens[0]), [float(t) for t in tokens[1:]]
        except (IndexError, ValueError):
            rows = []
            continue
        if index == 1:
            rows = [values]
        elif rows and index == len(rows) + 1 and len(values) == len(rows[0]):
            rows.append(values)
        else:
            rows = []
        if len(rows) == mmax:
            blocks.append(np.array(rows))
            rows = []
    return blocks


def valence_density_table(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(r (Bohr), rho (e/Bohr^3), header) of the atomic valence density of the psp8 file ``path``,
    as the file holds it (column 3 / 4 pi of the valence-density block; see the module doc)."""
    lines = Path(path).read_text().splitlines()
    head = _header(lines, path)
    if head["extension_switch"] not in _WITH_DENSITY:
        raise DFTSetupError(f"{path} carries no atomic valence density (extension_switch = "
                            f"{head['extension_switch']}, needs 1 or 3); regenerate it with "
                            "ONCVPSP's psp8 density output or use SPARC-X-API's psp8 set")
    lmax, lloc = head["lmax"], head["lloc"]
    index = (sum(1 for ll in range(lmax + 1) if ll != lloc) + 1
             + (sum(1 for ll in range(1, lmax + 1) if ll != lloc)
                if head["extension_switch"] in _WITH_SPIN_ORBIT else 0)
             + (1 if head["fchrg"] > 0 else 0))
    blocks = _radial_blocks(lines[6:], head["mmax"])
    if len(blocks) <= index or blocks[index].shape[1] < 2:
        raise DFTSetupError(f"{path}: found {len(blocks)} radial blocks of {head['mmax']} rows, "
                            f"the valence density should be block {index + 1}; the file is "
                            "truncated or not ONCVPSP psp8")
    r, rho = blocks[index][:, 0], blocks[index][:, 1] / (4 * np.pi)
    if r[0] != 0 or np.any(np.diff(r) <= 0):
        raise DFTSetupError(f"{path}: the radial grid of the valence density does not start at 0 "
                            "and increase; not a psp8 file SPARC can read")
    return r, rho, head


@functools.lru_cache(maxsize=None)
def radial_density(path: Path, element: str) -> RadialDensity:
    """The atomic valence density of the psp8 file ``path`` as a :class:`RadialDensity`, scaled to
    integrate to the file's zion (cached per process).

    The tables end at the last radial point (5.99 Bohr in SPARC-X-API's set), where the density is
    still ~1e-4 e/Bohr^3; so they hold slightly less than zion: SPARC-X-API's Si 3.9533 of 4 e
    (-1.2 %), Ge -0.39 %, Sn -0.63 %, Cr -0.54 %, Fe -0.28 %, Co -0.22 %, Ni -0.18 %, H -9.7 %
    (Simpson's rule on the file's grid). SPARC keeps the same truncation and scales its whole
    superposition to N_e on the grid; here each table is scaled by zion / integral instead, so
    that the SAD can be evaluated on any part of the cell and every atom carries its charge.
    For a one-element cell the two differ only by the grid's quadrature error.
    """
    r, rho, head = valence_density_table(path)
    integral = radial_integral(r, rho)
    if not integral > 0:
        raise DFTSetupError(f"{path}: the valence density integrates to {integral:g} e")
    return tabulate(element, head["zion"], r, rho * (head["zion"] / integral))
