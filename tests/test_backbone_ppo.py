"""PPO learns through every backbone of the `network=` group, and the README's parameter counts are the real ones.

The market (`helpers.planted_trend_csv`): daily returns of +-0.4% drift plus 0.4% noise, the drift's sign flipping
in regimes of about 40 bars. The causal features (past 1-, 5-, 20- and 60-bar returns, ...) reveal the regime, so
the known answer is trend following. A short PPO run, built from the Hydra config exactly as `jaxrl.train` builds it
(`network=<backbone>` with tiny widths -> `torso_spec` -> PPO's actor and critic torsos), must then, on the same
continuous out-of-sample backtest (the gate window, deterministic policy):

- beat its own untrained initial parameters by a clear margin (the untrained actor head starts at scale 0.01, so its
  targets are inside the 0.05 deadband and the policy is flat),
- beat both constant exposures (always long, always short), so it did not just learn a bias,
- hold the sign of the planted regime on most bars.

One compile per backbone (training, validation selection and the backtests in one jitted call); tiny shapes.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from jaxrl.agents.networks import ActorCritic
from jaxrl.agents.ppo import PPO
from jaxrl.envs.position import BOOK_SIZE
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.gate.backtest import evaluate
from jaxrl.networks import BACKBONES, param_count, torso_from_config, torso_spec

from helpers import planted_trend_csv, tiny_config

# Tiny widths of each backbone, as command-line overrides of its hydra_conf/network/<name>.yaml.
TINY = {
    "mlp": {"hidden": [16], "embed_dim": 16, "head_hidden": [16]},
    "tcn": {"channels": 8, "num_blocks": 2, "embed_dim": 16, "head_hidden": [16]},  # receptive field 13 >= window 8
    "price_causal_mixer": {"channels": 8, "num_blocks": 1, "embed_dim": 16, "head_hidden": [16]},
    "itransformer": {"d_model": 8, "num_layers": 1, "num_heads": 2, "embed_dim": 16, "head_hidden": [16]},
}
# 32 updates of 16 envs x 32 steps (episodes of 32 bars), a validation backtest every 4 updates.
AGENT = ["agent.total_timesteps=16384", "agent.num_envs=16", "agent.num_steps=32", "agent.num_minibatches=4",
         "agent.lr=0.001", "selection.eval_every=4"]
MARKET = {"bars": 1300, "seed": 1, "drift": 0.004, "vol": 0.004, "mean_regime": 40}

# Margins, each far below what every backbone reaches (total return 0.6-1.0 over the one-year gate window, Sharpe
# 8-11, regime agreement 0.83-0.95 on seeds 0-3) and far above what the untrained or a constant policy gets.
OVER_UNTRAINED = 0.30  # total return over the gate window above the untrained policy's
OVER_CONSTANT = 0.15  # ... above the better of always long and always short
MIN_SHARPE = 4.0
MIN_AGREEMENT = 0.75  # share of gate bars whose exposure has the sign of the planted drift


def overrides(name: str) -> list[str]:
    return [f"network={name}"] + [f"network.{key}={value}".replace(" ", "") for key, value in TINY[name].items()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("planted") / "TREND_daily.csv"
    regime = planted_trend_csv(path, **MARKET)
    return path, regime


def train_and_backtest(name, path, regime) -> dict:
    """Train PPO with backbone `name` (one compile: training with validation selection, then the gate-window
    backtests of the untrained and the chosen parameters and of both constant exposures)."""
    cfg = tiny_config(f"data.path={path}", "data.symbol=TREND", "gate.years=1", *AGENT, *overrides(name))
    experiment = Experiment.from_config(cfg)
    learner, env, env_params = experiment.learner, experiment.env, experiment.env_params

    def trained_vs_untrained(key):
        state = learner.init_state(key)
        untrained = state["runner"].params
        state, metrics, _ = learner.run_periods(state, learner.num_periods)
        both = jax.tree.map(lambda a, b: jnp.stack([a, b]), untrained, learner.chosen_params(state))
        gated = jax.vmap(learner.evaluate_gate)(both)  # [untrained, trained] on the same backtest
        constant = jax.vmap(lambda c: evaluate(env, env_params, lambda obs, s: jnp.full((1,), c), learner.gate))(
            jnp.array([1.0, -1.0]))
        return gated, constant, metrics["episode_return"], state["selection"].best_update

    gated, constant, episode_return, best_update = jax.jit(trained_vs_untrained)(jax.random.PRNGKey(0))
    window = learner.gate.span
    return {
        "learner": learner,
        "gated": jax.tree.map(np.asarray, gated), "constant": jax.tree.map(np.asarray, constant),
        "episode_return": np.asarray(episode_return), "best_update": int(best_update),
        # the drift's sign in the return each gate decision earns: decision bar t earns returns[t + 1]
        "regime": regime[window.start + 1: window.start + 1 + window.length],
    }


# The sequence backbones; `mlp` is PPO's default torso, which the rest of the suite trains (test_train, test_selection,
# test_env_family, ...), so it is left out here to keep the suite's compile time down.
LEARNING = sorted(set(BACKBONES) - {"mlp"})


@pytest.mark.parametrize("name", LEARNING)
def test_ppo_learns_the_planted_trend_through_the_backbone(name, planted):
    out = train_and_backtest(name, *planted)
    learner = out["learner"]
    # The network group reached PPO's actor and critic: this backbone, at the tiny widths.
    assert isinstance(learner, PPO) and learner.network.torso.backbone == name
    settings = dict(learner.network.torso.backbone_kwargs)
    assert all(settings[k] == (tuple(v) if isinstance(v, list) else v) for k, v in TINY[name].items()
               if k != "head_hidden")
    assert learner.network.torso.head_hidden == tuple(TINY[name]["head_hidden"])

    metrics, exposures = out["gated"]["metrics"], out["gated"]["exposures"]
    untrained, trained = metrics["total_return"]
    constant = out["constant"]["metrics"]["total_return"]
    report = (f"{name}: trained {trained:+.3f} (Sharpe {metrics['sharpe'][1]:+.2f}), untrained {untrained:+.3f}, "
              f"long {constant[0]:+.3f}, short {constant[1]:+.3f}")
    assert trained > untrained + OVER_UNTRAINED, report
    assert trained > constant.max() + OVER_CONSTANT, report
    assert metrics["sharpe"][1] > MIN_SHARPE, report

    regime = out["regime"]
    assert regime.shape == exposures[1].shape and set(np.unique(regime)) == {-1.0, 1.0}
    agreement = float(np.mean(np.sign(exposures[1]) == regime))
    majority = max(np.mean(regime > 0), np.mean(regime < 0))  # what the better constant exposure agrees on
    assert agreement > max(MIN_AGREEMENT, majority + 0.1), (report, agreement, majority)

    # Training itself improved, and a real (non-flat) evaluation was selected.
    episode_return = out["episode_return"]
    assert np.all(np.isfinite(episode_return[1:]))
    assert episode_return[-4:].mean() > episode_return[1:5].mean() + 2.0, episode_return
    assert out["best_update"] > 0 and metrics["flat_realized_exposure_ratio"][1] < 0.5


# ---- the README's parameter counts -----------------------------------------------------------------------------------
COUNT_KINDS = ("actor-critic", "torso", "backbone")  # a column header names what it counts (checked in this order)


def readme_count_table() -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {backbone: row cells}) of the table in README.md's "## Networks" section whose header has
    parameter-count columns."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("\n## Networks\n", 1)[1].split("\n## ", 1)[0]
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            tables.append(rows)
            rows = []
    (header, *body), = [t for t in tables if any("param" in h.lower() for h in t[0])]
    table = {re.match(r"`([^`]+)`", row[0]).group(1): row for row in body[1:]}
    return header, table


def default_network(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(PROJECT_ROOT) / "hydra_conf" / "network" / f"{name}.yaml"))


def test_readme_parameter_counts_are_the_real_ones():
    """Every count column of the README's parameter table, at the yaml defaults and the default 32 x 8 window: the
    backbone, the torso (backbone + head) and PPO's whole actor-critic (two torsos and the heads)."""
    header, table = readme_count_table()
    assert set(table) == set(BACKBONES)
    columns = {i: next(kind for kind in COUNT_KINDS if kind in h.lower()) for i, h in enumerate(header)
               if "param" in h.lower()}
    assert "torso" in columns.values(), header
    obs = jnp.zeros((BOOK_SIZE + 32 * 8,))
    for name, row in table.items():
        network = default_network(name)
        torso = torso_from_config(network, window=32, num_features=8)
        actor_critic = ActorCritic(1, False, torso=torso_spec(network, 32, 8))  # position: one continuous action
        torso_params = jax.eval_shape(torso.init, jax.random.PRNGKey(0), obs)
        counts = {"backbone": param_count(torso_params["params"]["backbone"]), "torso": param_count(torso_params),
                  "actor-critic": param_count(jax.eval_shape(actor_critic.init, jax.random.PRNGKey(0), obs))}
        for index, kind in columns.items():
            assert int(row[index].replace(",", "")) == counts[kind], (name, header[index], counts)
