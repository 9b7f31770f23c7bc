"""gymnax's own environments (CartPole, Pendulum, the MinAtar games, ...), loaded only when a config names one.

`import gymnax` costs seconds (its package import loads every one of its environments, and with them matplotlib,
seaborn and scipy), so it happens in `make_gymnax_task`, never when `jaxrl.envs` is imported; jaxrl's own
environments subclass `jaxrl.envs.gymnax_api.Environment` instead.

Image observations (MinAtar's (10, 10, C) boards) are flattened by `FlattenObservation`: the learners' torsos for
non-trading environments are MLPs over a flat float observation.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl.envs.gymnax_api import Box, Environment
from jaxrl.envs.registry import registered_envs
from jaxrl.errors import UserError


def _flat(obs: jax.Array) -> jax.Array:
    return jnp.reshape(obs, (-1,)).astype(jnp.float32)


class FlattenObservation(Environment):
    """Any gymnax-API environment with its observations flattened to one float32 vector (C-order, so an (H, W, C)
    image becomes H * W * C values); steps, resets, rewards and actions are the wrapped environment's own."""

    def __init__(self, env: Any):
        self.env = env

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        info = {**info, "final_observation": _flat(info["final_observation"])}
        return _flat(obs), state, reward, terminated, truncated, info

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None):
        obs, state = self.env.reset(key, params)
        return _flat(obs), state

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        return _flat(obs), state, reward, terminated, info

    def reset_env(self, key: jax.Array, params: Any):
        obs, state = self.env.reset_env(key, params)
        return _flat(obs), state

    def get_obs(self, state: Any, params: Any = None, key: jax.Array | None = None) -> jax.Array:
        return _flat(self.env.get_obs(state, params=params, key=key))

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_truncated(state, params)

    def is_terminated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_terminated(state, params)

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    def action_space(self, params: Any = None):
        return self.env.action_space(params)

    def observation_space(self, params: Any = None) -> Box:
        inner = self.env.observation_space(params)
        size = math.prod(inner.shape)
        low = jnp.broadcast_to(jnp.asarray(inner.low, jnp.float32), inner.shape).reshape(-1)
        high = jnp.broadcast_to(jnp.asarray(inner.high, jnp.float32), inner.shape).reshape(-1)
        return Box(low, high, (size,), jnp.float32)

    def state_space(self, params: Any = None):
        return self.env.state_space(params)


def _gymnax():
    import gymnax  # seconds: only for a config that names one of gymnax's environments

    return gymnax


def gymnax_env_names() -> tuple[str, ...]:
    """Every environment gymnax has registered (imports gymnax)."""
    return tuple(_gymnax().registered_envs)


def make_gymnax_task(name: str) -> tuple[Any, Any]:
    """(env, env_params) of gymnax's environment `name`; an image observation comes flattened (`FlattenObservation`)."""
    gymnax = _gymnax()
    if name not in gymnax.registered_envs:
        raise UserError(f"unknown env {name!r}; jaxrl's environments: {', '.join(registered_envs())}; gymnax's: "
                        f"{', '.join(gymnax.registered_envs)}")
    env, params = gymnax.make(name)
    if len(env.observation_space(params).shape) > 1:
        env = FlattenObservation(env)
    return env, params


__all__ = ["FlattenObservation", "gymnax_env_names", "make_gymnax_task"]
