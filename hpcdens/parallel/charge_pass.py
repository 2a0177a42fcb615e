"""The atomic-charge correction of a prediction file on every rank (docs/charges.md).

When the model carries a charge model (``hpcdens charges``), ``hpcdens predict`` writes
``rho_normalised`` as Eq. 9 followed by the per-atom Eq. 9 (:func:`hpcdens.charges.correct`):
rho' = f rho (1 + sum_a lam_a w_a), f = N_e / int rho (with radial shells, one lam and weight per
shell of every atom, docs/charges.md). The whole grid is never held by one rank:

1. each rank reads its block's rho back from the file chunk by chunk, computes the Hirshfeld
   weights of the chunk's points (a point's weights depend on that point alone; only the atoms
   with an image within a pro-atom radius of the block enter, as for the SAD, so the cost per
   block does not grow with the cell) and adds the chunk's share of the atoms' populations and
   of the sparse overlap matrix A_ab = sum_r w_a w_b f rho dV;
2. the populations are summed over ranks, the overlap matrices gathered to rank 0, which solves
   for lam (natm unknowns) with the charge model's targets and broadcasts it;
3. a second read of each chunk writes rho' into ``rho_normalised``.

The sums are floating-point sums in rank order, so rho_normalised agrees between rank counts to
rounding (about 1e-15 relative), not bit for bit as Eq. 9 alone. Rank 0 holds the overlap
matrix, about 1-3 kB per atom (a few hundred neighbours within two pro-atom radii).
"""

from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols

from .. import charges
from ..charge_correction import (
    load_charge_model,
    target_populations,
    weight_radials,
    weights_at,
)
from .collective import allreduce_array, on_every_rank, on_root
from .decomposition import chunk_boxes
from .halo import PeriodicStructure, atoms_near_block


def write_corrected(comm, plan, decomp, writer, factor: float) -> dict:
    """Write ``rho_normalised`` = ``factor`` rho corrected to the atomic charges of
    ``plan.record.charges`` into the open prediction file ``writer`` (collective; every rank
    its block, chunk by chunk). Returns {"charge_rmse_change" (e), "lambda_max"} on every rank;
    failures on any rank are raised on every rank."""
    from scipy.sparse import coo_matrix

    symbols = [chemical_symbols[z] for z in plan.numbers]
    natm, dv = len(symbols), plan.grid.voxel_volume_bohr3
    models, radii, radial = load_charge_model(plan.record.charges, symbols)
    n_col = len(radii) + 1                       # columns per atom: its radial shells
    boxes = [box for _, box in chunk_boxes(decomp.local_start, decomp.local_stop,
                                           plan.chunk_points)]
    structure = PeriodicStructure.from_arrays(plan.positions_bohr, plan.numbers, plan.cell_bohr)
    near = atoms_near_block(structure, plan.grid_shape, decomp.local_start, decomp.local_stop,
                            max(r.r_cut for r in weight_radials(radial).values()) + 1e-6) \
        if boxes else np.zeros(0, dtype=int)
    positions, near_symbols = plan.positions_bohr[near], [symbols[i] for i in near]
    cols = (near[:, None] * n_col + np.arange(n_col)).ravel()     # the near atoms' columns

    def chunk(lo, hi):
        """The chunk's rho (Eq. 9) and Hirshfeld weights (columns: ``cols``)."""
        rho = writer.read_chunk("rho", lo, hi) * factor
        points = plan.grid.cartesian_points(lo, hi)
        return rho, weights_at(plan.cell_bohr, positions, near_symbols, points, radial, radii)

    def sums():
        now, a = np.zeros(natm * n_col), coo_matrix((len(cols), len(cols)))
        for lo, hi in boxes:
            rho, w = chunk(lo, hi)
            now[cols] += charges.populations(w, rho, dv)
            a = a + charges.overlap(w, rho, dv)
        a = a.tocoo()
        return now, (cols[a.row], cols[a.col], a.data)

    now, part = on_every_rank(comm, sums)
    now = allreduce_array(comm, now)
    parts = comm.gather(part, root=0)
    def solve():
        rows, columns, vals = (np.concatenate([p[k] for p in parts]) for k in range(3))
        a = coo_matrix((vals, (rows, columns)), shape=(natm * n_col,) * 2)   # duplicates summed
        target, change = target_populations(models, radii, radial, plan.positions_bohr,
                                            plan.numbers, plan.cell_bohr, now)
        lam = charges.solve_lambda(a, now, target)
        return lam, {"charge_rmse_change": change, "lambda_max": float(np.abs(lam).max())}

    lam, info = on_root(comm, solve)

    def apply():
        for lo, hi in boxes:
            rho, w = chunk(lo, hi)
            writer.write_chunk("rho_normalised", lo, hi, rho * (1.0 + w @ lam[cols]))

    on_every_rank(comm, apply)
    return info
