"""Pooled training (`data.pool`): episodes drawn from several instruments' train splits, never leaving one, never
reaching a validation or gate bar; the agent gated on every pooled instrument; clear errors for what cannot pool."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from helpers import tiny_config
from jaxrl.data.from_config import load_data
from jaxrl.data.pool import PooledMarket
from jaxrl.envs import make_env
from jaxrl.envs.position_pool import draw_start
from jaxrl.errors import UserError
from jaxrl.run import run_experiment
from omegaconf import OmegaConf


@pytest.fixture(scope="module")
def pooled():
    cfg = tiny_config("data.pool=[qqq,ewj]")
    market = load_data(cfg)
    env, params = make_env(OmegaConf.to_container(cfg.env, resolve=True), market)
    return cfg, market, env, params


def test_pool_loads_each_instrument_with_its_own_split_and_provenance(pooled):
    cfg, market, _, _ = pooled
    assert isinstance(market, PooledMarket) and market.symbol == "SPY"
    assert [m.symbol for m in market.pool] == ["QQQ", "EWJ"]
    assert [p["symbol"] for p in market.provenance()] == ["QQQ", "EWJ"]
    assert all(len(p["sha256"]) == 64 for p in market.provenance())
    # each is normalised on its own train split: its train features have mean ~0 and std ~1
    for other in market.pool:
        train = np.asarray(other.arrays.features)[other.split.train_start: other.split.train_end]
        assert np.abs(train.mean(axis=0)).max() < 0.2 and np.abs(train.std(axis=0) - 1).max() < 0.2


def test_episode_starts_cover_every_train_split_and_never_leave_one(pooled):
    cfg, market, env, params = pooled
    episode = int(cfg.env.episode_len)
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    starts = np.asarray(jax.vmap(lambda k: draw_start(k, params))(keys))
    # the segments as the params lay them out: the run's own rows, then each pooled train split (rows 0..train_end)
    segments, offset = [(market.split.train_start, market.split.train_end - episode)], market.num_bars
    for other in market.pool:
        segments.append((offset + other.split.train_start, offset + other.split.train_end - episode))
        offset += other.split.train_end + 1
    assert params.returns.shape[0] == offset and params.features.shape[0] == offset
    inside = np.zeros(starts.shape, bool)
    for k, (low, high) in enumerate(segments):
        mine = (starts >= low) & (starts <= high)
        inside |= mine
        share, expected = mine.mean(), (high - low + 1) / sum(h - l + 1 for l, h in segments)
        assert abs(share - expected) < 0.02, (k, share, expected)  # uniform over every allowed start
        assert starts[mine].min() - low < 20 and high - starts[mine].max() < 20  # the whole range is reached
    assert inside.all()  # no start outside a train split: never on a validation or gate bar, never across a seam
    # the pooled rows are the pooled instruments' own data, unchanged
    qqq = market.pool[0]
    low = market.num_bars
    np.testing.assert_array_equal(np.asarray(params.returns[low: low + qqq.split.train_end + 1]),
                                  np.asarray(qqq.arrays.returns[: qqq.split.train_end + 1]))


def test_without_a_pool_the_start_is_the_plain_draw():
    cfg = tiny_config()
    market = load_data(cfg)
    _, params = make_env(OmegaConf.to_container(cfg.env, resolve=True), market)
    assert params.pool_low is None and not isinstance(market, PooledMarket)
    keys = jax.random.split(jax.random.PRNGKey(1), 512)
    ours = jax.vmap(lambda k: draw_start(k, params))(keys)
    plain = jax.vmap(lambda k: jax.random.randint(k, (), params.start_low, params.start_high + 1))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(plain))


@pytest.mark.parametrize("overrides, message", [
    (["data.pool=[btc]"], "periods per year"),
    (["data.pool=[nosuch]"], "no data config 'nosuch'"),
    (["data.pool=[spy]"], "listed twice or is the run's own instrument"),
    (["data.pool=[basket]"], "a basket cannot be pooled"),
    (["data.pool=[42]"], "expected a data config name or a mapping with a path"),
])
def test_what_cannot_pool_is_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        load_data(tiny_config(*overrides))
    cfg = tiny_config("data.pool=[qqq]")
    cfg.env.name = "exit"
    with pytest.raises(UserError, match="env=exit does not take a pool"):
        load_data(cfg)


def test_pool_and_synthetic_training_are_refused(tmp_path):
    cfg = tiny_config("data.pool=[qqq]", "data.train_source=mix")
    with pytest.raises(UserError, match="data.pool cannot be combined with synthetic training"):
        run_experiment(cfg, tmp_path / "run", verbose=False)


def test_pooled_run_is_gated_on_every_instrument(tmp_path):
    cfg = tiny_config("data.pool=[qqq]", "run.plots=false", registry=tmp_path / "registry")
    result = run_experiment(cfg, tmp_path / "run", verbose=False)
    gate = json.loads((tmp_path / "run" / "gate.json").read_text())
    pool = gate["pool"]
    assert pool["total"] == 1 and set(pool["instruments"]) == {"QQQ"}
    qqq = pool["instruments"]["QQQ"]
    assert qqq["n_returns"] == 5 * 252 and qqq["end"] == "2021-03-31"  # QQQ's own gate window
    assert qqq["passed"] == (qqq["rolling_sharpe_mean"] >= gate["threshold"])
    assert qqq["candidate_rules"]["applied"][0] == "rolling_sharpe_mean >= threshold"
    assert result["record"]["data_pool"][0]["symbol"] == "QQQ"
    assert "pool        QQQ" in result["summary"]
