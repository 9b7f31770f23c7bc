"""The generator registry, calibration on the train split only, and sampling many paths at once."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.data import MarketArrays, MarketData
from jaxrl.data.features import causal_features, causal_features_jax, normalise, normalise_jax
from jaxrl.errors import UserError
from jaxrl.synth import bootstrap, garch, regime


class Generator(NamedTuple):
    """`fit(train_returns: np.ndarray, **settings) -> params` on the host; `sample(key, params, length)` pure."""

    fit: Callable[..., Any]
    sample: Callable[[jax.Array, Any, int], jnp.ndarray]


GENERATORS: dict[str, Generator] = {
    "bootstrap": Generator(bootstrap.fit, bootstrap.sample),
    "garch": Generator(garch.fit, garch.sample),
    "regime": Generator(regime.fit, regime.sample),
}


def get_generator(name: str) -> Generator:
    if name not in GENERATORS:
        raise UserError(f"unknown generator {name!r}; available: {sorted(GENERATORS)}")
    return GENERATORS[name]


def train_returns(market: MarketData) -> np.ndarray:
    """The returns earned by train decisions: bars train_start + 1 .. train_end (float64, host side).

    The last one is bar train_end = val_start, the last return the train split may see (see `Split`); nothing
    from the validation or gate returns (bars val_start + 1 ..) is read.
    """
    split = market.split
    returns = np.asarray(market.arrays.returns[split.train_start + 1: split.train_end + 1], dtype=np.float64)
    if not np.all(np.isfinite(returns)):
        raise ValueError(f"{market.path}: the train split holds non-finite returns")
    return returns


def fit_generator(name: str, market: MarketData, **settings: Any):
    """Calibrate generator `name` on `market`'s train split only; `settings` go to its `fit`."""
    return get_generator(name).fit(train_returns(market), **settings)


def sample_paths(key, name: str, params: Any, num_paths: int, length: int) -> jnp.ndarray:
    """(num_paths, length) returns: `sample` vmapped over `num_paths` keys split from `key`, in one compile."""
    sample = get_generator(name).sample
    keys = jax.random.split(key, int(num_paths))
    return _vmapped(sample, int(length))(keys, params)


_COMPILED: dict[tuple[Callable, int], Callable] = {}


def _vmapped(sample: Callable, length: int) -> Callable:
    if (sample, length) not in _COMPILED:
        _COMPILED[(sample, length)] = jax.jit(jax.vmap(lambda k, p: sample(k, p, length), in_axes=(0, None)))
    return _COMPILED[(sample, length)]


def synthetic_arrays(market: MarketData, paths: np.ndarray) -> MarketArrays:
    """Market arrays of synthetic return paths (P, L), for an environment to trade them.

    Each path becomes closes starting at 1 (length L + 1, `returns[0] = 0` as in `MarketArrays`) and the same
    causal features as the real data, normalised with the real train split's statistics. Features are undefined
    (zero) for the first FEATURE_LOOKBACK bars, so episodes on these arrays should start at bar
    FEATURE_LOOKBACK + window - 1 or later, as on real data. Host side (pandas rolling windows).
    """
    paths = np.atleast_2d(np.asarray(paths, dtype=np.float64))
    returns = np.concatenate([np.zeros((paths.shape[0], 1)), paths], axis=1)
    closes = np.cumprod(1.0 + returns, axis=1)
    features = np.stack([normalise(causal_features(c), market.feature_mean, market.feature_std) for c in closes])
    return MarketArrays(closes=jnp.asarray(closes, jnp.float32), returns=jnp.asarray(returns, jnp.float32),
                        features=jnp.asarray(features, jnp.float32))


# Generated returns are floored here: a heavy-tailed draw below -100% would make prices non-positive.
MIN_RETURN = -0.99


def sample_market(key, name: str, params: Any, feature_mean, feature_std, num_paths: int, length: int):
    """`synthetic_arrays` inside the graph: `num_paths` fresh paths of `length` bars from generator `name`.

    Returns (returns (P, length), features (P, length, F)), float32. Bar 0 of each path is its start: return 0,
    close 1; bars 1..length-1 carry `length - 1` generated returns (floored at MIN_RETURN). Features are
    `causal_features_jax` of the path's closes, normalised with `feature_mean` / `feature_std` (pass the real train
    split's); rows before FEATURE_LOOKBACK are 0. Pure in (key, params); `num_paths` and `length` are static.
    """
    sample = get_generator(name).sample
    keys = jax.random.split(key, int(num_paths))
    paths = jax.vmap(lambda k: sample(k, params, int(length) - 1))(keys).astype(jnp.float32)
    returns = jnp.concatenate([jnp.zeros((paths.shape[0], 1), jnp.float32), jnp.maximum(paths, MIN_RETURN)], axis=1)
    closes = jnp.cumprod(1.0 + returns, axis=1)
    mean = jnp.asarray(feature_mean, jnp.float32)
    std = jnp.asarray(feature_std, jnp.float32)
    features = jax.vmap(lambda c: normalise_jax(causal_features_jax(c), mean, std))(closes)
    return returns, features


def describe_params(params: Any) -> dict[str, Any]:
    """Fitted parameters as JSON-ready numbers; long arrays (the bootstrap's returns) only by their length."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(params):
        value = np.asarray(getattr(params, field.name))
        if value.size > 16:
            out[field.name] = {"length": int(value.size)}
        else:
            out[field.name] = value.tolist()
    for derived in ("persistence", "unconditional_variance", "stationary"):
        if hasattr(type(params), derived):
            out[derived] = np.asarray(getattr(params, derived)).tolist()
    return out
