"""The static layout and traced side of the `position` environment's synthetic bank, and its counter hashes."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class SyntheticParams:
    """The traced side of a synthetic bank (the static side, which sets shapes, is the env's `SyntheticBank`)."""

    bank_start: jnp.ndarray  # () int32, first bank row = T, the number of real bars
    generation: jnp.ndarray  # () int32, refreshes so far; the newest paths lie in slot generation % generations
    generator: Any  # fitted generator params (calibrated on the train split only)
    feature_mean: jnp.ndarray  # (F,) the real train split's normalisation, applied to synthetic features too
    feature_std: jnp.ndarray  # (F,)


@dataclasses.dataclass(frozen=True)
class SyntheticBank:
    """Static layout of the synthetic bank appended after the T real rows.

    The bank holds `generations` slots of `num_segments` segments of `env.segment_len` rows each. A segment is
    one generated path: FEATURE_LOOKBACK + window - 1 warm-up bars, then `episode_len` decisions and the return
    the last one earns, so a synthetic episode starts at the segment's row FEATURE_LOOKBACK + window - 1 and never
    leaves its segment. Refresh g writes slot g % generations and new episodes start in that slot; a path is
    therefore kept for `generations - 1` further refreshes, so an episode that outlives one rollout is not spliced
    onto a different path when `generations >= ceil(episode_len / rollout steps) + 1`
    (`jaxrl.synth.training.bank_generations`). With 1 generation every refresh replaces every path.
    """

    generator: str  # a name in jaxrl.synth.GENERATORS
    num_segments: int
    episode_len: int  # the longest episode a segment holds
    sample: Callable  # the path sampler, jaxrl.synth.sample_market (passed in: envs never import jaxrl.synth)
    generations: int = 1

    def __post_init__(self):
        if self.num_segments < 1 or self.episode_len < 1 or self.generations < 1:
            raise ValueError(f"invalid synthetic bank {self}: num_segments, episode_len, generations must be >= 1")


def mix32(x):
    """A 32-bit integer hash (the murmur3 finaliser): turns a counter into well-mixed random bits."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def counter_normal(counter, time):
    """A standard normal draw from a uint32 `counter` and a step `time` (Box-Muller on two hashes): no PRNG key."""
    first = mix32(counter ^ mix32(time.astype(jnp.uint32) + jnp.uint32(0x632BE5AB)))
    second = mix32(first ^ jnp.uint32(0x9E3779B9))
    u1 = ((first >> 8).astype(jnp.float32) + 0.5) * (1.0 / (1 << 24))  # in (0, 1): the log stays finite
    u2 = (second >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
    return jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2)


_REFRESH: dict[tuple, Any] = {}  # compiled `refresh` per bank layout, for building params


def with_bank_params(env, params, market, episode_len: int, generator_params: Any, fraction: float, bank_key):
    """`params` (PositionParams of the real data) extended by `env`'s synthetic bank, its first generation written."""
    if generator_params is None:
        raise ValueError("an env with a synthetic bank needs generator_params (jaxrl.synth.fit_generator)")
    if episode_len > env.bank.episode_len:
        raise ValueError(f"episode_len {episode_len} does not fit the synthetic bank's segments "
                         f"(built for episodes of at most {env.bank.episode_len} decisions)")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"synthetic_fraction must lie in [0, 1], got {fraction}")
    if market.arrays.features.shape[1] != env.num_features:
        raise ValueError(f"{market.path}: {market.arrays.features.shape[1]} features, env expects "
                         f"{env.num_features}")
    num_bars = int(market.arrays.returns.shape[0])
    rows = env.bank_rows
    synthetic = SyntheticParams(
        bank_start=jnp.asarray(num_bars, jnp.int32),
        generation=jnp.asarray(-1, jnp.int32),  # the first refresh below writes generation 0 into slot 0
        generator=generator_params,
        feature_mean=jnp.asarray(market.feature_mean, jnp.float32),
        feature_std=jnp.asarray(market.feature_std, jnp.float32),
    )
    params = params.replace(
        returns=jnp.concatenate([params.returns, jnp.zeros((rows,), params.returns.dtype)]),
        features=jnp.concatenate([params.features, jnp.zeros((rows, env.num_features), params.features.dtype)]),
        synthetic_fraction=float(fraction),
        synthetic=synthetic,
    )
    if bank_key is None:
        bank_key = 0
    if isinstance(bank_key, int):
        bank_key = jax.random.PRNGKey(bank_key)
    static = (env.window, env.num_features, env.bank)  # all that `refresh` depends on besides its arguments
    if static not in _REFRESH:
        _REFRESH[static] = jax.jit(env.refresh)
    return _REFRESH[static](bank_key, params)
