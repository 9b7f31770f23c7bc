"""What a learner is: the `Learner` protocol that `jaxrl.chunks`, `jaxrl.population` and `jaxrl.experiment` use,
and `LearnerBase`, the evaluation-period skeleton PPO and every offline learner share.

A learner built on `LearnerBase` supplies only its updates and its policy:

    init(key, hyper, env_params) -> runner        a flax struct with at least `update` and `env_params`
    run_updates(runner, num_updates) -> (runner, per-update metrics)
    runner_params(runner) -> params               the parameters its deterministic policy acts with
    deterministic_policy(params, env_params) -> policy(obs, env_state) -> action

and calls `setup_periods(...)` in its constructor. The base class then gives `init_state`, `run_periods` (K updates,
then a validation backtest that updates the selection, `jaxrl.gate.selection`), `chosen_params`, `evaluate_gate` and
`train`, plus the protocol's defaults (`init_input`, `place_state`, `batch_bytes`, `dataset_metadata`). Everything
is pure and jit-able; `jax.vmap(train)(keys)` trains several seeds in one compile.

Data parallelism (`run.data_parallel=true`): `split_data(mesh)` splits the axis `data_axis()` names (PPO's
environments, an offline learner's minibatch) over the mesh's "data" axis (`jaxrl.sharding.device_mesh`).
`place_state` then puts the runner's `data_fields` (leaves with that axis first) split and everything else
replicated, and the learner marks its batches with `shard(...)` inside the graph: jit partitions the same global
program (GSPMD) and inserts the all-reduce of the mean loss, so the result equals the one-device run up to float
reassociation.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxrl.distributed import put_global
from jaxrl.errors import UserError
from jaxrl.gate.backtest import GateSetup, evaluate
from jaxrl.gate.selection import SelectionConfig, evaluate_and_select, init_selection, run_evaluation_periods
from jaxrl.sharding import DATA

__all__ = ["Learner", "LearnerBase"]


@runtime_checkable
class Learner(Protocol):
    """What the chunked runner, populations and the experiment read of a learner."""

    selection: SelectionConfig
    num_periods: int  # evaluation periods of a whole run
    num_updates: int  # num_periods x selection.eval_every
    steps_per_update: int  # environment steps (PPO) or sampled transitions (offline) per update
    gate: GateSetup | None  # the gate window, None without market data
    selection_setup: GateSetup | None  # where checkpoints are chosen (validation, or the gate when optimistic)
    dataset_metadata: Mapping[str, Any] | None  # the offline dataset's record (labelers, hashes, oracle), else None

    def init_input(self, seed: int) -> Any: ...  # what `init_state` starts from

    def init_state(self, key, hyper=None, env_params=None) -> dict: ...

    def place_state(self, state) -> Any: ...  # where the state lives (a population: over a device mesh)

    data_mesh: Any  # run.data_parallel: the mesh whose "data" axis splits `data_axis()`, None when not split

    def data_axis(self) -> tuple[str, int, str]: ...  # what it splits: ("agent.num_envs", 64, "environments")

    def split_data(self, mesh) -> None: ...  # split that axis over mesh's "data" axis (before compiling)

    def state_sharding(self, state) -> Any: ...  # a NamedSharding per state leaf on the data mesh

    def run_periods(self, state, num_periods: int) -> tuple[dict, dict, dict]: ...

    def chosen_params(self, state) -> Any: ...

    def evaluate_gate(self, params, env_params=None) -> dict: ...

    def deterministic_policy(self, params, env_params=None): ...

    def hyper(self) -> Any: ...  # the traced numeric settings (a population overrides them per member)

    def batch_bytes(self, state) -> int: ...  # bytes of one update's transient batch (shapes only)


class LearnerBase:
    """The evaluation-period skeleton and the protocol's defaults (see the module docstring)."""

    gate: GateSetup | None = None
    selection_setup: GateSetup | None = None
    dataset_metadata: Mapping[str, Any] | None = None
    data_mesh = None  # set by split_data
    data_fields: tuple[str, ...] = ()  # the runner's fields whose leaves carry the data axis first (PPO: its envs)

    def setup_periods(self, env, env_params, gate: GateSetup | None, validation: GateSetup | None,
                      selection: SelectionConfig | None, num_updates: int, steps_per_update: int) -> None:
        """The static pieces every learner has: its environment, gate, selection and whole evaluation periods."""
        self.env = env
        self.env_params = env_params
        self.gate = gate
        self.selection = selection or SelectionConfig()
        # Where checkpoints are chosen: the validation window, or the gate window only when asked explicitly.
        self.selection_setup = gate if self.selection.optimistic else validation
        period = self.selection.eval_every
        self.num_periods = -(-int(num_updates) // period)
        self.num_updates = self.num_periods * period  # whole evaluation periods
        self.steps_per_update = int(steps_per_update)

    # ---- the protocol's defaults ----------------------------------------------------------------------------
    def init_input(self, seed: int):
        return jax.random.PRNGKey(seed)

    def place_state(self, state):
        """The state on the data mesh (`state_sharding`); as it is without one."""
        if self.data_mesh is None:
            return state
        return put_global(state, self.state_sharding(state))  # the mesh may span processes (jaxrl.distributed)

    # ---- data parallelism (run.data_parallel) -------------------------------------------------------------------
    def data_axis(self) -> tuple[str, int, str]:
        """(setting, size, unit) of the axis data parallelism splits; learners that can split one override this."""
        raise UserError(f"run.data_parallel=true: {type(self).__name__} has no axis to split over devices")

    def split_data(self, mesh) -> None:
        """Split `data_axis()` over `mesh`'s "data" axis (a `jaxrl.sharding.device_mesh`); call before compiling."""
        setting, size, unit = self.data_axis()
        devices = int(mesh.shape[DATA])
        if size % devices:
            raise UserError(f"run.data_parallel=true splits {setting}={size} ({unit}) over {devices} devices: it must "
                            f"be a multiple of {devices}")
        self.data_mesh = mesh if devices > 1 else None

    def shard(self, tree, axis: int = 0):
        """In the graph: `tree`'s leaves split along `axis` over the data axis (as they are without a data mesh)."""
        if self.data_mesh is None:
            return tree
        spec = PartitionSpec(*(None,) * axis, DATA)
        return jax.lax.with_sharding_constraint(tree, NamedSharding(self.data_mesh, spec))

    def state_sharding(self, state):
        """A `NamedSharding` per leaf of `state` on the data mesh: the runner's `data_fields` split along their first
        axis, everything else (parameters, optimiser, keys, selection) replicated."""
        split = NamedSharding(self.data_mesh, PartitionSpec(DATA))
        whole = NamedSharding(self.data_mesh, PartitionSpec())
        shardings = jax.tree.map(lambda _: whole, state)
        runner = state["runner"]
        shardings["runner"] = shardings["runner"].replace(
            **{name: jax.tree.map(lambda _: split, getattr(runner, name)) for name in self.data_fields})
        return shardings

    def keep_layout(self, state):
        """In the graph: `state` laid out as `place_state` puts it, so every compiled chunk takes what it returns."""
        if self.data_mesh is None:
            return state
        return jax.lax.with_sharding_constraint(state, self.state_sharding(state))

    def batch_bytes(self, state) -> int:
        """No per-update batch beyond the state (learners with one override this)."""
        del state
        return 0

    def hyper(self):
        raise ValueError(f"{type(self).__name__} has no traced hyperparameters: it cannot train as a population")

    # ---- evaluation periods: K updates, then a validation backtest that updates the selection -----------------
    def init_state(self, key, hyper=None, env_params=None):
        """The state `run_periods` continues; `hyper` (default `self.hyper()`) and `env_params` are this member's."""
        runner = self.init(key, hyper, env_params)
        selection = init_selection(self.runner_params(runner)) if self.selection_setup is not None else None
        return {"runner": runner, "selection": selection}

    def run_periods(self, state, num_periods: int):
        """`num_periods` (static) evaluation periods. Returns (state, per-update metrics, per-evaluation history)."""

        def evaluate_period(runner, selection):
            params = self.runner_params(runner)
            policy = self.deterministic_policy(params, runner.env_params)
            return evaluate_and_select(self.env, runner.env_params, policy, self.selection_setup, selection, params,
                                       runner.update, self.selection)

        state, metrics, history = run_evaluation_periods(self.run_updates, evaluate_period, self.keep_layout(state),
                                                         num_periods, self.selection.eval_every)
        return self.keep_layout(state), metrics, history

    def chosen_params(self, state):
        """The selected parameters, or the final ones when no evaluation was selectable (all flat) or none ran."""
        runner, selection = state["runner"], state["selection"]
        final = self.runner_params(runner)
        if selection is None:
            return final
        found = selection.best_update >= 0
        return jax.tree.map(lambda best, last: jnp.where(found, best, last), selection.best_params, final)

    def evaluate_gate(self, params, env_params=None):
        """The gate backtest of `params` (on other env params, e.g. costs, when given: same shapes)."""
        env_params = self.env_params if env_params is None else env_params
        return evaluate(self.env, env_params, self.deterministic_policy(params, env_params), self.gate)

    def train(self, key, hyper=None, env_params=None):
        state = self.init_state(key, hyper, env_params)
        state, metrics, history = self.run_periods(state, self.num_periods)
        params = self.chosen_params(state)
        result = {"params": params, "final_params": self.runner_params(state["runner"]), "metrics": metrics,
                  "history": history, "selection": state["selection"]}
        if self.gate is not None:
            result["gate"] = self.evaluate_gate(params, state["runner"].env_params)
        return result
