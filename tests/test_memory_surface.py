"""The memory model in batch and sequence length, on invented readings."""

from __future__ import annotations

import pytest

from sweep.results.memory_model import GIB, MARGIN
from sweep.results.memory_surface import fit_surface, fit_surface_rows, materialises_attention

FIXED, A, C = 20 * GIB, 300_000.0, 12.0  # bytes; per token; per b * s^2


def peak(b, s, c=C):
    return FIXED + A * b * s + c * b * s * s


def test_a_known_curve_is_recovered_exactly():
    pts = [(b, s, peak(b, s)) for b, s in [(1, 1024), (1, 4096), (2, 2048), (4, 8192)]]
    fit = fit_surface(pts, quadratic=True)
    assert fit.fixed_bytes == pytest.approx(FIXED, rel=1e-6)
    assert fit.per_token_bytes == pytest.approx(A, rel=1e-6)
    assert fit.attention_bytes == pytest.approx(C, rel=1e-6)
    assert fit.max_error_pct < 1e-6 and fit.n_points == 4 and fit.max_tokens == 4 * 8192


def test_without_the_quadratic_term_for_kernels_that_do_not_hold_the_scores():
    assert materialises_attention("eager") and not materialises_attention("sdpa")
    pts = [(1, s, peak(1, s, c=0)) for s in (1024, 2048, 4096)]
    fit = fit_surface(pts, quadratic=False)
    assert fit.attention_bytes == 0 and fit.per_token_bytes == pytest.approx(A)


def test_too_few_points_give_no_fit():
    assert fit_surface([(1, 1024, peak(1, 1024))], quadratic=False) is None
    # two steps of the same token count cannot tell fixed memory from per-token memory
    assert fit_surface([(1, 2048, 1.0 * GIB), (2, 1024, 1.1 * GIB)], quadratic=False) is None
    assert fit_surface([(1, 1024, peak(1, 1024)), (1, 2048, peak(1, 2048))], True) is None


@pytest.mark.parametrize("card_gb", [16, 24, 40, 48, 80, 141])
def test_predictions_with_the_margin_never_pass_the_real_limit(card_gb):
    pts = [(1, s, peak(1, s)) for s in (1024, 2048, 4096)]
    fit = fit_surface(pts, quadratic=True)
    card = card_gb * GIB
    s = fit.longest_seq(card, batch=1, step=128).value
    b = fit.largest_batch(card, seq=2048).value
    if peak(1, 128) > card:  # even the fixed part does not fit
        assert s == 0
        return
    assert peak(1, s) <= card * (1 - MARGIN) + 1 and peak(1, s + 128) > card * (1 - MARGIN)
    assert b == 0 or peak(b, 2048) <= card * (1 - MARGIN) + 1
    assert fit.longest_seq(card, step=128, fails_at=s).value == s - 128  # a failure caps it


def test_far_predictions_are_flagged():
    fit = fit_surface([(1, s, peak(1, s, c=0)) for s in (1024, 2048)], quadratic=False)
    near = fit.largest_batch(21 * GIB, seq=2048)
    far = fit.longest_seq(141 * GIB, batch=1, step=128)
    assert not near.extrapolated and far.extrapolated and far.value > 2 * 2048


def test_rows_fit_from_one_peak_source():
    rows = [
        {"batch_size": 1, "seq_len": s, "peak_reserved_gib": peak(1, s, 0) / GIB}
        for s in (512, 1024)
    ]
    fit, source = fit_surface_rows(rows, "sdpa")
    assert source == "peak_reserved_gib" and fit.per_token_bytes == pytest.approx(A)
