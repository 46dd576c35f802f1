"""A translucent band is only un-blended when its inverse stays in range (issue #14, session 8:
retouchd.textdetect.unblend.fit_band)."""

from __future__ import annotations

import numpy as np

from retouchd.textdetect.unblend import apply, fit_band


def _planks(rows: int = 120, columns: int = 300) -> np.ndarray:
    """Even dark-grey planks (too even along a band's edges to fit the blend's slope: its colour is assumed)."""
    rng = np.random.default_rng(5)
    return np.asarray(np.clip(82 + rng.normal(0, 1.5, (rows, columns, 3)), 0, 255), np.uint8)


def test_a_dark_row_pair_over_a_bright_inside_is_no_band() -> None:
    """A drop shadow's dark along the top and bottom rows of a caption's box over even planks (held-out shadow
    ColdRipple-1): fitted as a black band at α 0.71, its inside (the planks, not darkened) came back 3.4× as
    bright, 33 % of it clipped: a bright straight-edged block (restored 0.03, 1.19 % of the image changed outside
    the overlay; 0.99 and 0 % once rejected). More than `MAX_CLIPPED` clipped: no band."""
    image = _planks()
    y0, y1, x0, x1 = 40, 80, 20, 280
    image[y0 : y0 + 3, x0:x1] = (image[y0 : y0 + 3, x0:x1] * 0.29).astype(np.uint8)
    image[y1 - 3 : y1, x0:x1] = (image[y1 - 3 : y1, x0:x1] * 0.29).astype(np.uint8)
    assert fit_band(image, (y0, y1, x0, x1), np.zeros(image.shape[:2], bool)) is not None  # the slope alone
    assert fit_band(image, (y0, y1, x0, x1), np.zeros(image.shape[:2], bool), in_range=True) is None


def test_a_true_band_over_even_planks_is_unblended() -> None:
    """The same planks under a real black band of α 0.55 over the whole rectangle: fitted (colour assumed black)
    and un-blended back to the planks within 3 levels, nothing clipped."""
    clean = _planks()
    image = clean.copy()
    y0, y1, x0, x1 = 40, 80, 20, 280
    image[y0:y1, x0:x1] = np.round(clean[y0:y1, x0:x1] * 0.45).astype(np.uint8)
    band = fit_band(image, (y0, y1, x0, x1), np.zeros(image.shape[:2], bool), in_range=True)
    assert band is not None
    assert np.allclose(band.gain, 0.45, atol=0.02)
    out, clipped = apply(image, [band])
    assert not clipped.any()
    assert np.abs(out.astype(int) - clean).max() <= 3
