"""reprise.dp.masks: SPARTA's row rule against brute force, the densities, the weighted/random/magnitude rules."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from reprise.dp import masks as M
from reprise.io import ReproError


def _kept_rows(mask):
    rows = mask.reshape(mask.shape[0], -1)
    assert torch.all((rows == rows[:, :1])), "mask is not row-structured"
    return rows[:, 0].bool()


@pytest.mark.parametrize("density", [0.1, 0.2, 0.5, 0.75])
def test_row_mask_is_the_brute_force_best_subset(density):
    g = torch.Generator().manual_seed(1)
    for trial in range(5):
        a = torch.randn(7, 3, 2, 2, generator=g) + (0.3 if trial % 2 else -0.2)  # some rows negative: v_r = 0
        keep = _kept_rows(M.row_mask(a, density))
        k = 7 - int(7 * (1 - density))
        assert int(keep.sum()) == k
        v = torch.clamp(a.reshape(7, -1).sum(1), min=0)
        best = max(sum(v[list(s)].tolist()) for s in itertools.combinations(range(7), k))
        assert math.isclose(float(v[keep].sum()), best, rel_tol=0, abs_tol=1e-5)
        # and every kept row scores at least as much as every frozen one
        if k < 7:
            assert float(v[keep].min()) >= float(v[~keep].max())


def test_row_density_bounds_for_many_shapes():
    g = torch.Generator().manual_seed(0)
    for rows in range(1, 40):
        for density in (0.1, 0.2, 0.33, 0.5, 1.0):
            kept = int(_kept_rows(M.row_mask(torch.randn(rows, 5, generator=g), density)).sum())
            assert math.floor(density * rows) <= kept <= math.ceil(density * rows)
            kept_r = int(_kept_rows(M.random_row_mask((rows, 3, 3), density, g)).sum())
            assert kept_r == kept


def test_weighted_rule_scores_rows_on_scores_times_abs_weights():
    g = torch.Generator().manual_seed(2)
    a, w = torch.rand(9, 4, generator=g), torch.randn(9, 4, generator=g)
    keep = _kept_rows(M.weighted_row_mask(a, w, 0.3))
    v = (a * w.abs()).sum(1)
    assert set(torch.nonzero(keep).flatten().tolist()) == set(torch.topk(v, int(keep.sum())).indices.tolist())


def test_random_rows_seeded_and_magnitude_mask_keeps_largest():
    m1 = M.random_row_mask((10, 2), 0.2, torch.Generator().manual_seed(5))
    m2 = M.random_row_mask((10, 2), 0.2, torch.Generator().manual_seed(5))
    assert torch.equal(m1, m2)
    w = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(3))
    m = M.magnitude_mask(w, 0.2)
    n = w.numel()
    assert int(m.sum()) == n - int(n * 0.8)
    assert float(w.abs()[m.bool()].min()) >= float(w.abs()[~m.bool()].max())


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_density_is_a_clear_error(bad):
    with pytest.raises(ReproError, match="density"):
        M.row_mask(torch.ones(4, 2), bad)
