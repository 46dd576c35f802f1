"""The blend of a tiled mark measured from its copies (retouchd.textdetect.blendfit)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from retouchd.textdetect import blendfit
from retouchd.textdetect.cells import Cells
from retouchd.textdetect.lattice import Lattice

FAR = (1, 0)
"""The copy whose photo guess went wrong (lattice coordinates from the image's centre)."""


def fitted_line(step_of: Callable[[tuple[int, int], float], float], size: int = 256, cell: int = 64) -> blendfit.Line:
    """The blend line of a 5×5 px core at the centre of a square lattice's cell, over an image whose copies
    each show one gap x (the photo's distance from the mark's level: 225 ± 10 levels, a dark busy photo; 165
    under the copy `FAR`) and the step `step_of(copy, x)`."""
    cells = Cells((size, size), Lattice((cell, 0.0), (0.0, cell), 1.0))
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    copy_m = np.round((cols - size // 2) / cell).astype(int)
    copy_n = np.round((rows - size // 2) / cell).astype(int)
    gap = np.zeros((size, size), np.float32)
    step = np.zeros((size, size), np.float32)
    for key in {(int(m), int(n)) for m, n in zip(copy_m.ravel(), copy_n.ravel(), strict=True)}:
        here = (copy_m == key[0]) & (copy_n == key[1])
        x = 165.0 if key == FAR else float(225.0 + rng.normal(0, 10))
        gap[here] = x
        step[here] = step_of(key, x) + rng.normal(0, 1, int(here.sum()))
    core = np.zeros((2 * cells.hy, 2 * cells.hx), bool)
    core[cells.hy - 2 : cells.hy + 3, cells.hx - 2 : cells.hx + 3] = True
    return blendfit.line(gap, step, cells, core)


def test_a_lone_copy_off_the_others_line_does_not_set_the_slope() -> None:
    """Under one copy the photo guess went wrong (far out in x, and its step follows no blend): alone it would
    draw the least-squares line through itself (slope 0.6, no residual to show it). Judged against the line the
    others fit, it is left out, and the others do not vary enough to fit: ≤ 20 % of the pixels fitted. The
    same copy on the others' line (opacity 0.35) is mostly kept (their line, extrapolated that far, is
    uncertain): ≥ 70 % fitted, slope within 0.05 of 0.35."""
    wrong = fitted_line(lambda copy, x: 10.0 if copy == FAR else 0.35 * x)
    assert wrong.fitted.mean() <= 0.2
    right = fitted_line(lambda copy, x: 0.35 * x)
    assert right.fitted.mean() >= 0.7
    assert abs(float(np.median(right.slope[right.fitted])) - 0.35) <= 0.05


def test_colour_spread_is_judged_against_the_pixels_own_errors() -> None:
    """The colour offsets the stroke pixels imply spread as widely as their own fits are uncertain: measured
    in those standard errors the spread is about 1 (a mark over a dark photo: 60 levels, each ± 60); the same
    spread with fits certain to ± 5 levels is many standard errors (no one mark)."""
    rng = np.random.default_rng(1)
    slope = np.full(2000, 0.35, np.float32)
    offset = (slope * rng.normal(0, 60, 2000)).astype(np.float32)
    fitted = np.ones(2000, bool)
    uncertain = blendfit.implied(blendfit.Line(slope, offset, fitted, np.full(2000, 60, np.float32)), 100)
    certain = blendfit.implied(blendfit.Line(slope, offset, fitted, np.full(2000, 5, np.float32)), 100)
    assert uncertain is not None and certain is not None
    assert 50 <= uncertain[1] <= 70 and 0.8 <= uncertain[2] <= 1.2
    assert certain[2] >= 10


def test_a_few_chance_pixels_do_not_veto_a_mark_over_an_even_photo() -> None:
    """Over a dark even photo no blend line can be fitted, and every copy steps toward white by the same share
    (0.35): the mark is taken as white. A 4×4 px patch of its 20×20 px strokes (4 %) does vary between the
    copies, with a slope past any translucent mark's (0.95: guesses gone wrong by chance) — too few pixels to
    veto it (under `MIN_FEW`)."""
    size, cell = 256, 64
    cells = Cells((size, size), Lattice((cell, 0.0), (0.0, cell), 1.0))
    rows, cols = np.mgrid[:size, :size]
    copy_m = np.round((cols - size // 2) / cell).astype(int)
    copy_n = np.round((rows - size // 2) / cell).astype(int)
    local_x, local_y = cols - size // 2 - cell * copy_m, rows - size // 2 - cell * copy_n
    rng = np.random.default_rng(2)
    gap = (225.0 + rng.normal(0, 1, (size, size))).astype(np.float32)
    step = 0.35 * gap
    varied = (local_x >= -2) & (local_x <= 1) & (local_y >= -2) & (local_y <= 1)
    gap = np.where(varied & ((copy_m + copy_n) % 2 == 0), 150.0, gap).astype(np.float32)
    step = np.where(varied, 0.95 * gap - 60.0, step).astype(np.float32)
    beneath = np.repeat((255.0 - gap)[..., None], 3, axis=2).astype(np.float32)
    image = (beneath + step[..., None]).astype(np.float32)
    core = np.zeros((2 * cells.hy, 2 * cells.hx), bool)
    core[cells.hy - 10 : cells.hy + 10, cells.hx - 10 : cells.hx + 10] = True
    measured = blendfit.colour(image, beneath, cells, core, 255.0)
    assert measured is not None
    colour, even = measured
    assert even and colour.tolist() == [255.0, 255.0, 255.0]
