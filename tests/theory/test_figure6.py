"""Figure 6's data: each pair drawn once."""

from __future__ import annotations

import numpy as np


def test_figure6_draws_each_pair_once_so_lambda_colours_a_channel_end_to_end():
    from mixcollapse.theory.figure6 import figure6_data
    from mixcollapse.theory.loss import pair_grid

    data = figure6_data(samples=200, classes=[4, 1, 7], seed=3)
    assert len(data["lam"]) == 6 * 200  # 3 same-class and 3 different-class pairs, not 9 ordered ones
    diff = ~data["same"]
    # An ordered grid lays (b, a, 1 - lambda) on (a, b, lambda): the same point twice, in opposite colours.
    points = {tuple(np.round(p, 9)) for p in data["optimal_xy"][diff]}
    assert len(points) == int(diff.sum())
    i, ip, lam = pair_grid([4, 1, 7], np.array([0.25]), ordered=False)
    assert list(zip(i.tolist(), ip.tolist(), strict=True)) == [(4, 4), (4, 1), (4, 7), (1, 1), (1, 7), (7, 7)]
    assert len(pair_grid([4, 1, 7], np.array([0.25]))[0]) == 9  # the loss's expectation keeps both orders
