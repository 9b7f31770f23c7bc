"""The gymnax environment API, owned by jaxrl: `Environment`, `EnvState` / `EnvParams` and the `Box` / `Discrete`
spaces, with gymnax 1.0's method signatures and auto-reset semantics.

jaxrl's trading environments subclass this instead of gymnax's base class, so `import jaxrl.envs` does not import
gymnax (whose package import loads matplotlib, seaborn and scipy for its own environments). Code written against
gymnax works unchanged with them:

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`step` runs `step_env` with the first half of `key`, and when the step terminated (`step_env`) or truncated
(`is_truncated`) returns a fresh `reset_env` from the second half instead; `info` gains `terminated`, `truncated`
and `final_observation` (the observation before the reset). gymnax's own environments (CartPole, MinAtar, ...) are
loaded only when a config names one (`jaxrl.envs.gymnax_tasks`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


# ---- spaces -------------------------------------------------------------------------------------------------------
class Space:
    """A jittable space: `sample(key)` draws a member, `contains(x)` tests one (a traced boolean)."""

    shape: tuple[int, ...] = ()
    dtype: Any = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        raise NotImplementedError

    def contains(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError


class Discrete(Space):
    """The integers 0 .. n - 1 (`n` categories): a discrete action."""

    def __init__(self, num_categories: int, *, dtype: Any = jnp.int32):
        if int(num_categories) < 0:
            raise ValueError(f"Discrete: num_categories must be >= 0, got {num_categories}")
        dtype = jnp.dtype(dtype)
        if dtype not in (jnp.dtype(jnp.int32), jnp.dtype(jnp.int64)):
            raise ValueError(f"Discrete: dtype must be int32 or int64, got {dtype.name}")
        if dtype == jnp.dtype(jnp.int64) and not jax.config.read("jax_enable_x64"):
            raise ValueError("Discrete(dtype=int64) needs JAX's x64 mode (jax_enable_x64)")
        self.n = int(num_categories)
        self.shape = ()
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Discrete({self.n}, dtype={self.dtype.name})"

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, self.dtype)
        return jnp.logical_and(x >= 0, x < self.n)


class Box(Space):
    """An array of `shape` with every value in [low, high] (scalars or arrays broadcast to `shape`)."""

    def __init__(self, low: Any, high: Any, shape: tuple[int, ...], dtype: Any = jnp.float32):
        self.low = low
        self.high = high
        self.shape = tuple(int(n) for n in shape)
        self.dtype = dtype

    def __repr__(self) -> str:
        def bound(value) -> str:
            array = np.asarray(value)
            return repr(array.item()) if array.ndim == 0 else np.array2string(array, threshold=6)

        dtype = np.dtype(self.dtype).name
        return f"Box(low={bound(self.low)}, high={bound(self.high)}, shape={self.shape}, dtype={dtype})"

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, self.shape, minval=self.low, maxval=self.high).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        return jnp.logical_and(jnp.all(x >= self.low), jnp.all(x <= self.high))


# ---- environments -------------------------------------------------------------------------------------------------
@struct.dataclass
class EnvState:
    time: int


@struct.dataclass
class EnvParams:
    max_steps_in_episode: int = 1


class Environment:
    """A pure, jittable environment: subclasses supply `reset_env`, `step_env`, `get_obs` (or `observe`), the
    spaces and `default_params`; `reset` / `step` (auto-reset) are gymnax's and are written once here."""

    @property
    def default_params(self) -> Any:
        return EnvParams()

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        """One step, auto-resetting a finished episode: (obs, state, reward, terminated, truncated, info)."""
        if params is None:
            params = self.default_params
        key_step, key_reset = jax.random.split(key)
        obs_step, state_step, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_step, params)
        done = jnp.logical_or(terminated, truncated)
        obs_reset, state_reset = self.reset_env(key_reset, params)
        state = jax.tree.map(lambda fresh, old: jax.lax.select(done, fresh, old), state_reset, state_step)
        obs = jax.tree.map(lambda fresh, old: jax.lax.select(done, fresh, old), obs_reset, obs_step)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_step}
        return obs, state, reward, terminated, truncated, info

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None):
        """A fresh episode: (obs, state)."""
        if params is None:
            params = self.default_params
        return self.reset_env(key, params)

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):
        """(obs, state, reward, terminated, info) of one transition, without truncation or reset."""
        raise NotImplementedError(f"{type(self).__name__} does not define step_env")

    def reset_env(self, key: jax.Array, params: Any):
        """(obs, state) of a fresh episode."""
        raise NotImplementedError(f"{type(self).__name__} does not define reset_env")

    def observe(self, key: jax.Array, state: Any, action: Any, params: Any) -> Any:
        """The observation of `state`, reached by `action` (gymnax 1.0's keyed hook; defaults to `get_obs`)."""
        del action
        return self.get_obs(state, params=params, key=key)

    def get_obs(self, state: Any, params: Any = None, key: jax.Array | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define get_obs")

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        """Whether the episode reached its time limit (the value is bootstrapped, unlike termination)."""
        return state.time >= params.max_steps_in_episode

    def is_terminated(self, state: Any, params: Any) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} does not define is_terminated")

    def is_terminal(self, state: Any, params: Any) -> jax.Array:
        """gymnax's older name for `is_terminated` (natural termination only, no time limit)."""
        return self.is_terminated(state, params)

    def discount(self, state: Any, params: Any) -> jax.Array:
        return jax.lax.select(self.is_terminated(state, params), 0.0, 1.0)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def num_actions(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not define num_actions")

    def action_space(self, params: Any) -> Space:
        raise NotImplementedError(f"{type(self).__name__} does not define action_space")

    def observation_space(self, params: Any) -> Space:
        raise NotImplementedError(f"{type(self).__name__} does not define observation_space")

    def state_space(self, params: Any) -> Space:
        raise NotImplementedError(f"{type(self).__name__} does not define state_space")


__all__ = ["Box", "Discrete", "EnvParams", "EnvState", "Environment", "Space"]
