"""The generator registry, calibration on the train split only, and sampling many paths at once."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.data import MarketArrays, MarketData
from jaxrl.data.features import causal_features, normalise
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
        raise ValueError(f"unknown generator {name!r}; available: {sorted(GENERATORS)}")
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
