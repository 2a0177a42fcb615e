"""Tests of hpcdens.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from hpcdens import metrics
from hpcdens.errors import InputError

REF = np.array([[1.0, 2.0], [3.0, 4.0]])
PRED = np.array([[1.5, 2.0], [2.0, 4.5]])
# differences 0.5, 0, -1, 0.5: squares 0.25 + 0 + 1 + 0.25 = 1.5, abs 2.0; ref range 3, sum|ref| 10


def test_nrmse_hand_computed():
    assert metrics.nrmse(PRED, REF) == pytest.approx(math.sqrt(1.5 / 4) / 3, rel=1e-15)
    assert metrics.nrmse(REF, REF) == 0.0
    assert metrics.nrmse(PRED.ravel(), REF.ravel()) == metrics.nrmse(PRED, REF)


def test_relative_l1_percent_hand_computed():
    assert metrics.relative_l1_percent(PRED, REF) == pytest.approx(20.0, rel=1e-15)
    assert metrics.relative_l1_percent(-REF, -REF) == 0.0
    assert metrics.relative_l1_percent([0.0, 0.0], [1.0, -1.0]) == pytest.approx(100.0)


def test_density_metrics_reject_bad_input():
    with pytest.raises(InputError, match=r"same shape, got \(4,\) and \(2, 2\)"):
        metrics.nrmse(PRED.ravel(), REF)
    with pytest.raises(ValueError, match="same shape"):
        metrics.relative_l1_percent(PRED[:1], REF)
    with pytest.raises(InputError, match="empty"):
        metrics.nrmse([], [])
    with pytest.raises(InputError, match="constant reference"):
        metrics.nrmse([1.0, 2.0], [3.0, 3.0])
    with pytest.raises(InputError, match="zero everywhere"):
        metrics.relative_l1_percent([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(InputError, match="NaN"):
        metrics.nrmse([np.nan, 2.0], [1.0, 2.0])


def test_sums_over_blocks_equal_whole_field():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.0, 0.3, (7, 5, 6))
    pred = ref + rng.normal(0, 0.01, ref.shape)
    blocks = [(slice(0, 3),), (slice(3, 3),), (slice(3, 7),)]  # one block empty, as on idle ranks
    parts = [metrics.error_sums(pred[b], ref[b]) for b in blocks]
    whole = metrics.errors_from_sums(metrics.combine_sums(parts))
    assert whole["nrmse"] == pytest.approx(metrics.nrmse(pred, ref), rel=1e-13)
    assert whole["relative_l1_percent"] == pytest.approx(
        metrics.relative_l1_percent(pred, ref), rel=1e-13)
    with pytest.raises(InputError, match="no points"):
        metrics.errors_from_sums(metrics.error_sums(np.zeros(0), np.zeros(0)))


def test_energy_errors_hand_computed():
    assert metrics.energy_error_per_atom(-100.5, -100.0, 8) == pytest.approx(0.0625)
    assert metrics.energy_error_per_atom(-100.0, -100.5, 8) == pytest.approx(0.0625)
    assert metrics.energy_error_per_electron(-100.5, -100.0, 32) == pytest.approx(0.015625)
    out = metrics.energy_error_per_atom([-10.0, -20.0], [-10.1, -19.0], [2, 4])
    np.testing.assert_allclose(out, [0.05, 0.25])
    np.testing.assert_allclose(metrics.energy_error_per_electron([1.0, 2.0], [0.0, 0.0], 4),
                               [0.25, 0.5])


def test_energy_errors_reject_bad_input():
    with pytest.raises(InputError, match="same shape"):
        metrics.energy_error_per_atom([1.0, 2.0], [1.0, 2.0, 3.0], 2)
    with pytest.raises(InputError, match="do not match in shape"):
        metrics.energy_error_per_atom([1.0, 2.0], [1.0, 2.0], [2, 3, 4])
    with pytest.raises(InputError, match="n_atoms must be > 0"):
        metrics.energy_error_per_atom(1.0, 2.0, 0)
    with pytest.raises(InputError, match="n_electrons must be > 0"):
        metrics.energy_error_per_electron(1.0, 2.0, [-1])
