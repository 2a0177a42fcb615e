"""Pure block arithmetic, halo selection and exact sums of hpcdens.parallel (no MPI)."""

import math
from itertools import product

import numpy as np
import pytest
from ase.units import Bohr

from hpcdens.errors import InputError
from hpcdens.grid import Grid
from hpcdens.neighbors import NeighborSearch
from hpcdens.parallel.collective import exact_partial_sum
from hpcdens.parallel.decomposition import (
    BlockLayout,
    all_boxes,
    assign_dims,
    blockdist,
    box_size,
    chunk_boxes,
)
from hpcdens.parallel.halo import (
    BlockHalo,
    PeriodicStructure,
    covered_radius,
    halo_region,
    select_images,
)
from hpcdens.structures import build_cell


def factorisations(size):
    """Every (d1, d2, d3) with d1 d2 d3 = size."""
    return [(a, b, size // (a * b)) for a in range(1, size + 1) if size % a == 0
            for b in range(1, size // a + 1) if (size // a) % b == 0]


@pytest.mark.parametrize("n", [1, 2, 5, 7, 16, 27])
def test_blockdist_splits_a_range_exactly_once(n):
    for parts in range(1, n + 5):
        blocks = [blockdist(n, parts, i) for i in range(parts)]
        counts = [c for c, _ in blocks]
        assert sum(counts) == n and max(counts) - min(counts) <= 1
        assert all(start == sum(counts[:i]) for i, (_, start) in enumerate(blocks))
        assert (parts > n) == (min(counts) == 0)


SHAPES = [(1, 1, 1), (2, 3, 5), (5, 1, 7), (4, 4, 4), (27, 27, 15), (9, 2, 11)]


@pytest.mark.parametrize("shape", SHAPES)
def test_blocks_cover_the_grid_exactly_once(shape):
    tried_empty = 0
    for size in [1, 2, 3, 4, 5, 6, 7, 8, 12, 17, 30, 64]:
        for dims in factorisations(size):
            boxes = all_boxes(shape, dims)
            assert len(boxes) == size
            count = np.zeros(shape, dtype=int)
            for start, stop in boxes:
                count[tuple(slice(a, b) for a, b in zip(start, stop))] += 1
            assert (count == 1).all(), (shape, dims)
            assert sum(box_size(*b) for b in boxes) == math.prod(shape)
            tried_empty += any(box_size(*b) == 0 for b in boxes)
    assert tried_empty > 0  # more ranks than points along an axis: empty blocks occur


def test_layout_slices_and_empty_blocks():
    shape, dims = (2, 6, 5), (3, 1, 1)
    layouts = [BlockLayout(shape, dims, (i, 0, 0)) for i in range(3)]
    assert [l.local_size for l in layouts] == [30, 30, 0]
    assert layouts[1].local_slices() == (slice(1, 2), slice(0, 6), slice(0, 5))
    assert layouts[2].local_shape == (0, 6, 5)
    assert list(chunk_boxes(layouts[2].local_start, layouts[2].local_stop, 7)) == []


def test_assign_dims_gives_long_axes_the_most_divisions():
    assert assign_dims((4, 2, 1), (10, 40, 20)) == (1, 4, 2)
    assert assign_dims((3, 1, 1), (27, 27, 15)) == (3, 1, 1)
    assert sorted(assign_dims((5, 3, 2), (8, 8, 8))) == [2, 3, 5]


@pytest.mark.parametrize("chunk", [1, 3, 5, 6, 11, 30, 31, 64, 1000])
def test_chunk_boxes_tile_the_box_in_c_order(chunk):
    start, stop = (3, 1, 2), (7, 6, 7)
    box = tuple(b - a for a, b in zip(start, stop))
    flat = np.arange(math.prod(box)).reshape(box)
    seen, expected_offset = [], 0
    for offset, (lo, hi) in chunk_boxes(start, stop, chunk):
        n = box_size(lo, hi)
        assert 1 <= n <= chunk and offset == expected_offset
        sub = flat[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))]
        np.testing.assert_array_equal(sub.ravel(), np.arange(offset, offset + n))
        seen.append(n)
        expected_offset += n
    assert sum(seen) == flat.size
    with pytest.raises(InputError):
        list(chunk_boxes(start, stop, 0))


def _diamond(primitive=False, supercell=(1, 1, 1), seed=0):
    atoms = build_cell("diamond", 5.6, supercell, primitive=primitive, symbol="Si")
    atoms.rattle(0.1, seed=seed)
    return atoms


def test_select_images_holds_every_image_within_the_covered_radius():
    atoms = _diamond(primitive=True)  # skewed 2-atom cell: many images
    s = PeriodicStructure.from_arrays(atoms.positions / Bohr, atoms.numbers, atoms.cell / Bohr)
    shape, start, stop, radius = (9, 9, 9), (2, 0, 4), (5, 3, 9), 6.0
    pos, atom, off = select_images(s, *halo_region(shape, start, stop, radius, s.heights))
    grid = Grid(s.cell_bohr, shape)
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(start, stop)],
                               indexing="ij"), -1).reshape(-1, 3)
    points = grid.cartesian_points(start, stop)
    cover = covered_radius(idx, shape, start, stop, radius, s.heights)
    assert cover.min() >= radius - 1e-12
    # brute force: all images with |n_i| <= 8 within the covered radius of some point
    offsets = np.array(list(product(range(-8, 9), repeat=3)))
    every = (s.frac[None, :, :] + offsets[:, None, :]).reshape(-1, 3) @ s.cell_bohr
    d = np.linalg.norm(every[None] - points[:, None], axis=2)
    needed = np.unique(np.nonzero(d < cover[:, None])[1])
    have = {tuple(np.round(p, 9)) for p in pos}
    assert all(tuple(np.round(every[i], 9)) in have for i in needed)
    np.testing.assert_allclose(pos, (s.frac[atom] + off) @ s.cell_bohr, atol=1e-12)


@pytest.mark.parametrize("primitive", [False, True])
def test_block_halo_equals_the_periodic_search(primitive):
    atoms = _diamond(primitive, (1, 1, 1) if not primitive else (2, 2, 2))
    cell = atoms.cell.array / Bohr
    s = PeriodicStructure.from_arrays(atoms.positions / Bohr, atoms.numbers, cell)
    grid = Grid.from_spacing(cell, 0.9)
    ref = NeighborSearch(atoms.positions / Bohr, atoms.numbers, cell, m=16)
    for start, stop in all_boxes(grid.shape, (2, 1, 2)):
        halo = BlockHalo(s, grid.shape, start, stop, 16, radius=3.0)  # too small on purpose
        idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(start, stop)],
                                   indexing="ij"), -1).reshape(-1, 3)
        points = grid.cartesian_points(start, stop)
        got = halo.neighbors(idx, points)
        want = ref.query_shell(points, 16)
        assert halo.growths >= 1
        np.testing.assert_allclose(got.kth_distance, want.kth_distance, atol=1e-12)
        np.testing.assert_allclose(halo.descriptors(idx, points), _desc(want), atol=1e-10)


def _desc(nb):
    from hpcdens.descriptors import from_neighbors

    return from_neighbors(nb, nb.k)


def test_exact_sum_is_correctly_rounded_and_split_independent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000) * np.exp(rng.uniform(-40, 40, 20000))
    x = np.concatenate([x, [0.0, 5e-324, -1e-310]])
    whole = exact_partial_sum(x)
    assert float(whole) == math.fsum(x)
    for parts in (2, 3, 7):
        assert sum((exact_partial_sum(p) for p in np.array_split(rng.permutation(x), parts)),
                   start=0) == whole
    assert exact_partial_sum(np.zeros(0)) == 0
