"""Labelers: the behaviour policies whose transitions make an offline dataset.

A labeler is a pure jnp function `labeler(key, obs, state) -> action` over the environment's observation and state,
vmapped over environments while the dataset is rolled out (`jaxrl.offline.dataset.collect`). The trading labelers
reuse the rule baselines of `jaxrl.baselines` (one mechanism per job), reading the market series in the env params
at the decision bar `state.bar` and before, never after:

- `trend_following`: sign of the past `lookback`-bar return (time-series momentum).
- `mean_reversion`: the opposite sign (or a z-score signal), fading the recent move.
- `random`: uniform actions of the env's action space (any env).
- `mix`: several of the above with set proportions, each transition recording which one produced it. `assign: env`
  gives each parallel environment one labeler for the whole rollout (exact counts); `assign: step` draws a labeler
  for every environment at every step.
- `oracle_random_mix`: the best exposure given the NEXT bar's return, mixed with random actions. That is look-ahead:
  it runs only with `allow_oracle: true`, and then the dataset, the model metadata and every report say
  `"oracle": true` (uses future returns).

A user's own labeler for any environment (e.g. a swing-up controller for gymnax Pendulum) is just a function with the
same signature, wrapped in a `LabelerSet`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.baselines import baseline_policy, baseline_settings, on_action_grid
from jaxrl.data import MarketArrays
from jaxrl.envs.base import TradingEnv, is_discrete
from jaxrl.errors import UserError

Labeler = Callable[[Any, Any, Any], jnp.ndarray]

LABELERS = ("trend_following", "mean_reversion", "random", "mix", "oracle_random_mix")
COMPONENTS = ("trend_following", "mean_reversion", "random", "oracle")
ASSIGNMENTS = ("env", "step")
# Keys of a `labeler/` config that describe the rollout, not a labeler's behaviour.
ROLLOUT_KEYS = ("num_envs", "num_steps", "seed")
ORACLE_WARNING = ("ORACLE: this dataset was labelled with the NEXT bar's return (look-ahead; uses future returns). "
                  "A policy learned from it and its gate result are not evidence of a tradable edge.")


class LookAheadError(ValueError):
    """A labeler that reads the future was asked for without `allow_oracle`."""


@dataclasses.dataclass(frozen=True)
class LabelerSet:
    """The labelers of one dataset: component `i` produces the transitions whose `labeler_id` is `i`."""

    names: tuple[str, ...]
    policies: tuple[Labeler, ...]
    weights: tuple[float, ...]  # proportions, summing to 1
    assign: str = "env"  # "env": one labeler per parallel environment; "step": drawn at every step
    oracle: bool = False  # some component reads future returns
    settings: tuple[Mapping[str, Any], ...] = ()  # each component's settings, for the metadata

    def __post_init__(self):
        if not self.policies or len(self.names) != len(self.policies) or len(self.weights) != len(self.policies):
            raise ValueError("a LabelerSet needs one name and one weight per labeler, and at least one labeler")
        if self.assign not in ASSIGNMENTS:
            raise ValueError(f"labeler assign must be one of {ASSIGNMENTS}, got {self.assign!r}")
        weights = np.asarray(self.weights, np.float64)
        if np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError(f"labeler weights must be >= 0 with a positive sum, got {list(self.weights)}")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights / weights.sum()))

    def env_assignment(self, num_envs: int) -> np.ndarray:
        """Labeler index of each parallel environment for `assign="env"`: exact counts by largest remainder."""
        quota = np.asarray(self.weights) * num_envs
        counts = np.floor(quota).astype(int)
        for i in np.argsort(-(quota - counts), kind="stable")[: num_envs - counts.sum()]:
            counts[i] += 1
        return np.repeat(np.arange(len(self.policies)), counts).astype(np.int32)

    def describe(self) -> list[dict[str, Any]]:
        settings = self.settings or tuple({} for _ in self.names)
        return [{"id": i, "name": name, "weight": weight, "settings": dict(setting)}
                for i, (name, weight, setting) in enumerate(zip(self.names, self.weights, settings))]


# ---- the components -----------------------------------------------------------------------------------------------
def _trading_arrays(name: str, env, env_params) -> MarketArrays:
    if not (isinstance(env, TradingEnv) and env.exposure_actions):
        raise ValueError(f"labeler {name!r} reads market returns: it needs a trading environment (env=position), "
                         f"not {env.name!r}")
    returns = jnp.asarray(env_params.returns, jnp.float32)
    # Relative closes c_t / c_0 = prod_{j<=t}(1 + r_j): the baselines compare closes only with each other, and each
    # c_t depends on returns up to bar t alone.
    closes = jnp.cumprod(1.0 + returns)
    return MarketArrays(closes=closes, returns=returns, features=env_params.features)


def _as_env_action(env, target_policy) -> Labeler:
    """Adapt `policy(obs, state) -> target exposure` to the env's action: a grid index or a (1,) array."""
    grid = env.action_grid
    policy = on_action_grid(target_policy, grid)
    discrete = grid is not None

    def labeler(key, obs, state):
        del key
        action = policy(obs, state)
        return action.astype(jnp.int32) if discrete else jnp.reshape(action, (1,)).astype(jnp.float32)

    return labeler


def rule_labeler(name: str, env, env_params, **settings: Any) -> Labeler:
    """`trend_following` or `mean_reversion` exactly as the baseline of the same name (settings and defaults)."""
    return baseline_labeler(name, env, env_params, 252, **settings)  # 252: unused by these rules


def baseline_labeler(name: str, env, env_params, periods_per_year: int, **settings: Any) -> Labeler:
    """Any baseline of `jaxrl.baselines` (BASELINES) as a labeler of the env's actions."""
    arrays = _trading_arrays(name, env, env_params)
    return _as_env_action(env, baseline_policy(name, arrays, periods_per_year, **settings))


def random_labeler(env, env_params) -> Labeler:
    """Uniform over the action space: any index of a discrete space, any point of a box."""
    space = env.action_space(env_params)
    if is_discrete(space):
        n = int(space.n)
        return lambda key, obs, state: jax.random.randint(key, (), 0, n).astype(jnp.int32)
    shape, low, high = tuple(space.shape), jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    return lambda key, obs, state: jax.random.uniform(key, shape, jnp.float32, low, high)


def oracle_labeler(env, env_params, exposure: float | None = None) -> Labeler:
    """LOOK-AHEAD: the exposure that earns most on the NEXT bar's return (the one this decision will earn).

    It reads `returns[bar + 1 + exec_lag]`, data the agent can never see at decision time. Only for studying how
    learners behave on perfect labels; `make_labelers` refuses it unless `allow_oracle` is set.
    """
    arrays = _trading_arrays("oracle", env, env_params)
    lag = int(env.exec_lag)
    grid = env.action_grid

    def next_return(state):
        return arrays.returns[jnp.asarray(state.bar, jnp.int32) + 1 + lag]  # the future: look-ahead on purpose

    if grid is not None:
        exposures = jnp.clip(jnp.asarray(grid, jnp.float32), -env_params.max_leverage, env_params.max_leverage)

        def labeler(key, obs, state):
            return jnp.argmax(exposures * next_return(state)).astype(jnp.int32)

        return labeler

    def labeler(key, obs, state):
        size = env_params.max_leverage if exposure is None else exposure
        return jnp.reshape(size * jnp.sign(next_return(state)), (1,)).astype(jnp.float32)

    return labeler


def component(name: str, env, env_params, settings: Mapping[str, Any]) -> tuple[Labeler, dict[str, Any]]:
    """One labeler and its checked settings."""
    settings = dict(settings)
    if name in ("trend_following", "mean_reversion"):
        checked = baseline_settings(name, **settings)
        return rule_labeler(name, env, env_params, **checked), checked
    if name == "random":
        if settings:
            raise ValueError(f"labeler 'random' has no settings, got {sorted(settings)}")
        return random_labeler(env, env_params), {}
    if name == "oracle":
        unknown = sorted(set(settings) - {"exposure"})
        if unknown:
            raise ValueError(f"labeler 'oracle' has no settings {unknown}; its settings: ['exposure']")
        return oracle_labeler(env, env_params, settings.get("exposure")), settings
    raise UserError(f"unknown labeler {name!r}; available: {list(LABELERS)} (mix components: {list(COMPONENTS)})")


# ---- from a `labeler/` config ---------------------------------------------------------------------------------------
def refuse_oracle(what: str) -> None:
    """Raise the look-ahead refusal for `what` (e.g. "labeler 'oracle_random_mix'")."""
    raise LookAheadError(
        f"{what} uses FUTURE returns (look-ahead): its oracle picks the best exposure given the NEXT bar's "
        "return, which no policy can know at decision time, so anything learned from it overstates what is "
        "tradable. It runs only with the explicit switch labeler.allow_oracle=true; the dataset, the model metadata "
        "and every report then say \"oracle\": true (uses future returns)."
    )


def make_labelers(labeler_cfg: Mapping[str, Any], env, env_params) -> LabelerSet:
    """The LabelerSet of a `labeler/` config (hydra_conf/labeler/*.yaml). Rollout keys (num_envs, ...) are ignored."""
    cfg = {k: v for k, v in dict(labeler_cfg).items() if k not in ROLLOUT_KEYS}
    if "name" not in cfg:
        raise ValueError(f"a labeler config needs a name; available: {list(LABELERS)}")
    name = str(cfg.pop("name"))
    allow_oracle = bool(cfg.pop("allow_oracle", False))
    if name == "mix":
        parts = cfg.pop("components", None)
        assign = str(cfg.pop("assign", "env"))
        if not parts:
            raise ValueError("labeler 'mix' needs components: a list of {name, weight, <settings>}")
        specs = []
        for part in parts:
            part = dict(part)
            if "name" not in part or "weight" not in part:
                raise ValueError(f"each mix component needs a name and a weight, got {part}")
            specs.append((str(part.pop("name")), float(part.pop("weight")), part))
    elif name == "oracle_random_mix":
        fraction = float(cfg.pop("oracle_fraction", 0.5))
        assign = str(cfg.pop("assign", "step"))
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"oracle_fraction must be in [0, 1], got {fraction}")
        specs = [("oracle", fraction, {}), ("random", 1.0 - fraction, {})]
    elif name in COMPONENTS and name != "oracle":
        assign = "env"
        specs = [(name, 1.0, cfg)]
        cfg = {}
    else:
        raise UserError(f"unknown labeler {name!r}; available: {list(LABELERS)}")
    if cfg:
        raise ValueError(f"labeler {name!r} has no settings {sorted(cfg)}")
    oracle = any(part == "oracle" for part, _, _ in specs)
    if oracle and not allow_oracle:
        refuse_oracle(f"labeler {name!r}")
    built = [component(part, env, env_params, settings) for part, _, settings in specs]
    return LabelerSet(
        names=tuple(part for part, _, _ in specs),
        policies=tuple(policy for policy, _ in built),
        weights=tuple(weight for _, weight, _ in specs),
        assign=assign,
        oracle=oracle,
        settings=tuple(settings for _, settings in built),
    )


def single(name: str, policy: Labeler) -> LabelerSet:
    """A LabelerSet of one user-supplied labeler."""
    return LabelerSet((name,), (policy,), (1.0,))


def mixture(parts: Sequence[tuple[str, Labeler, float]], assign: str = "env") -> LabelerSet:
    """A LabelerSet of user-supplied labelers `(name, labeler, weight)`."""
    return LabelerSet(tuple(n for n, _, _ in parts), tuple(p for _, p, _ in parts), tuple(w for _, _, w in parts),
                      assign)
