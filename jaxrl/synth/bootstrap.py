"""Stationary block bootstrap (Politis & Romano 1994) of the train-split returns.

Blocks start at uniform random bars of the train series and run on circularly; each bar starts a new block with
probability 1 / mean_block, so block lengths are geometric with mean `mean_block`. The resampled path is
stationary and keeps the return distribution exactly and short-range dependence (volatility clustering within
blocks) approximately.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class BootstrapParams:
    returns: jnp.ndarray  # (N,) train-split simple returns; N is static (it sets shapes)
    mean_block: jnp.ndarray  # () mean block length in bars (traced: a sweep over it is a vmap)


def fit(train_returns: np.ndarray, mean_block: float = 20.0) -> BootstrapParams:
    returns = np.asarray(train_returns, dtype=np.float64)
    if returns.ndim != 1 or returns.size < 2 or not np.all(np.isfinite(returns)):
        raise ValueError(f"bootstrap needs a 1-D finite series of at least 2 returns, got shape {returns.shape}")
    if not mean_block >= 1.0:
        raise ValueError(f"mean_block must be >= 1 bar, got {mean_block}")
    return BootstrapParams(returns=jnp.asarray(returns, jnp.float32), mean_block=jnp.asarray(mean_block, jnp.float32))


def sample_indices(key, params: BootstrapParams, length: int) -> jnp.ndarray:
    """(length,) positions in the train returns that `sample` reads. Without a scan: each bar's source is its
    block's origin plus the bars elapsed since the block started (a running maximum of block-start times),
    modulo N."""
    n = params.returns.shape[0]
    new_key, origin_key = jax.random.split(key)
    starts_block = jax.random.uniform(new_key, (length,)) < 1.0 / params.mean_block
    starts_block = starts_block.at[0].set(True)
    block_origin = jax.random.randint(origin_key, (length,), 0, n)
    time = jnp.arange(length)
    block_start_time = jax.lax.cummax(jnp.where(starts_block, time, 0))
    return (block_origin[block_start_time] + time - block_start_time) % n


def sample(key, params: BootstrapParams, length: int) -> jnp.ndarray:
    """(length,) resampled train returns."""
    return params.returns[sample_indices(key, params, length)]
