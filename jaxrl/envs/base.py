"""What a trading environment declares: `TradingEnv`, the gymnax-API `Environment` (`jaxrl.envs.gymnax_api`) every
jaxrl environment subclasses.

The learners, the backtests and the experiment read these capabilities as plain attributes; nothing probes an
environment for what it can do. A subclass overrides only what differs from the defaults:

    uses_step_key      `step` needs its own key per env and step (False: the env keeps its own random stream)
    perturbs_obs       `perturb_obs(key, obs, params)` adds training-only observation noise (PPO's rollouts)
    refreshes_data     `refresh(key, params)` regenerates the training data inside the graph before each update
    has_action_mask    `action_mask(state, params)` gives the valid discrete actions of a state
    has_diagnostics    `gate_info` / `gate_diagnostics` add the family's own view of the gate window to the report
    exposure_actions   an action is one instrument's target exposure (on `action_grid` when set): what the rule
                       labelers and the baselines act with
    log_keys           `info` entries PPO averages into each update's metrics
    window, num_features, exec_lag, action_grid, bank    the static shape-setting settings

Besides gymnax's `step_env` / `reset_env` / spaces, a trading environment supplies what the in-graph backtest
(`jaxrl.gate.backtest`) steps: `initial_state(bar, params)`, `get_obs(state, params)` and `transition(state, action,
params) -> (state, reward, terminated, info)` with `info["realized_exposure"]` and `info["strategy_return"]`, and
`params_for_train(market, **numbers)` for its builder (`jaxrl.envs.registry`).

Plain gymnax tasks (CartPole, Pendulum) declare nothing: `capabilities(env)` gives their defaults, so a learner
reads one `EnvCapabilities` for either kind.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from jaxrl.envs.gymnax_api import Discrete, Environment


class TradingEnv(Environment):
    """A gymnax-API environment with jaxrl's declared capabilities (class-level defaults; see the module docstring)."""

    uses_step_key: bool = True
    perturbs_obs: bool = False
    refreshes_data: bool = False
    has_action_mask: bool = False
    has_diagnostics: bool = False
    exposure_actions: bool = False
    log_keys: tuple[str, ...] = ()
    window: int = 0
    num_features: int = 0
    exec_lag: int = 0
    action_grid: tuple[float, ...] | None = None
    bank: Any = None  # a synthetic bank of generated training paths (jaxrl.envs.position_bank), or None

    def capabilities(self) -> "EnvCapabilities":
        return EnvCapabilities(uses_step_key=bool(self.uses_step_key), perturbs_obs=bool(self.perturbs_obs),
                               refreshes_data=bool(self.refreshes_data), has_action_mask=bool(self.has_action_mask),
                               log_keys=tuple(self.log_keys))

    def perturb_obs(self, key, obs, params):
        """Training-only observation noise; the default adds none (only read when `perturbs_obs`)."""
        del key, params
        return obs

    def refresh(self, key, params):
        """Fresh training data for the next update; the default keeps the params (only read when
        `refreshes_data`)."""
        del key
        return params

    def gate_info(self, params, policy, setup) -> Any:
        """Pure, jit-able: what `gate_diagnostics` summarises (only called when `has_diagnostics`); none here."""
        del params, policy, setup
        return None

    def gate_diagnostics(self, info, market, report) -> dict[str, Any] | None:
        """The family's own view of the gate window from `gate_info`'s output, or None when it has none."""
        del info, market, report
        return None

    def shape_key(self) -> tuple:
        """What a compiled backtest of this env depends on besides its arguments."""
        return (type(self).__module__, type(self).__qualname__, self.window, self.num_features, self.exec_lag,
                self.action_grid)


@dataclasses.dataclass(frozen=True)
class EnvCapabilities:
    """The capabilities a learner reads; the defaults are a plain gymnax task's."""

    uses_step_key: bool = True
    perturbs_obs: bool = False
    refreshes_data: bool = False
    has_action_mask: bool = False
    log_keys: tuple[str, ...] = ()


def capabilities(env) -> EnvCapabilities:
    """A trading environment's declared capabilities, or a plain gymnax task's defaults."""
    return env.capabilities() if isinstance(env, TradingEnv) else EnvCapabilities()


def is_discrete(space) -> bool:
    """Whether an action space is a set of indices (`Discrete`, jaxrl's or gymnax's) rather than a box."""
    if isinstance(space, Discrete):
        return True
    gymnax_spaces = sys.modules.get("gymnax.environments.spaces")  # a gymnax space exists only once gymnax is loaded
    return gymnax_spaces is not None and isinstance(space, gymnax_spaces.Discrete)
