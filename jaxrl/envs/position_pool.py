"""Pooled training for the `position` environment (`data.pool`, jaxrl.data.pool): the train splits of other
instruments appended after the run's own rows, and the table an episode start is drawn from.

Segment 0 is the run's own train split (starts `start_low .. start_high`), segment k >= 1 the k-th pooled
instrument's. Segment k's starts are `pool_low[k] .. pool_low[k] + count_k - 1`; `pool_before[k]` counts the starts
of the segments before it and `pool_total` all of them, so a uniform draw `u < pool_total` lands in the segment
whose range holds it (`PositionEnv.reset_env`). An episode never leaves its segment: a segment ends with the bar
of its instrument's last train return. Validation and gate bars stay the run's own rows, untouched.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.data import MarketData


def pooled_params(params, market: MarketData, pool: Sequence[MarketData], episode_len: int):
    """`params` with each pooled market's rows up to the end of its train split appended (its warm-up included,
    so observations of its first episode bars read its own past), and the start table over every segment."""
    returns, features = [params.returns], [params.features]
    lows, counts, offset = [params.start_low], [params.start_high - params.start_low + 1], market.num_bars
    for other in pool:
        split = other.split
        if split.train_end - episode_len < split.train_start:
            raise ValueError(f"{other.path}: episode_len {episode_len} does not fit the train split of this pooled "
                             f"instrument ({split.train_end - split.train_start} decisions)")
        returns.append(other.arrays.returns[: split.train_end + 1])
        features.append(other.arrays.features[: split.train_end + 1])
        lows.append(offset + split.train_start)
        counts.append(split.train_end - episode_len - split.train_start + 1)
        offset += split.train_end + 1
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return params.replace(returns=jnp.concatenate(returns), features=jnp.concatenate(features),
                          pool_low=jnp.asarray(lows, jnp.int32), pool_before=jnp.asarray(before, jnp.int32),
                          pool_total=jnp.asarray(int(np.sum(counts)), jnp.int32))


def draw_start(key, params):
    """An episode's first decision bar: uniform over the run's train split, or over every segment's starts."""
    if params.pool_low is None:
        return jax.random.randint(key, (), params.start_low, params.start_high + 1)
    draw = jax.random.randint(key, (), 0, params.pool_total)
    segment = jnp.searchsorted(params.pool_before, draw, side="right") - 1
    return params.pool_low[segment] + draw - params.pool_before[segment]


def params_on(params, market: MarketData):
    """`params` (every traced setting kept) on another instrument's rows: how a pooled instrument is gated."""
    return params.replace(returns=market.arrays.returns, features=market.arrays.features, pool_low=None,
                          pool_before=None, pool_total=None)
