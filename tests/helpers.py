"""Small configurations and planted-signal markets shared by the tests (compile time dominates: keep shapes tiny)."""

import os
import re

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from jaxrl.experiment import PROJECT_ROOT

TINY_AGENT = [
    "agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768", "agent.num_minibatches=2",
    "agent.hidden=[16]", "run.chunk_updates=2", "selection.eval_every=2",
]
TINY = [*TINY_AGENT, "env.window=8", "env.episode_len=32"]


def tiny_config(*overrides, registry=None):
    """The shipped Hydra config with tiny shapes; `registry` points the registry somewhere safe."""
    extra = [f"registry.root={registry}"] if registry is not None else ["registry.enabled=false"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *extra, *overrides])


def planted_trend_csv(path, bars=1700, seed=1, drift=0.002, vol=0.01, mean_regime=80):
    """Daily closes whose returns drift +-`drift` in regimes lasting about `mean_regime` bars (trend following
    earns on them), written as a Date,Close CSV. Returns the planted regime of every bar's return: `regime[b]` is
    the sign (+1 or -1) of the drift in returns[b] = c_b / c_{b-1} - 1, with regime[0] = 0 (bar 0 has no return)."""
    rng = np.random.default_rng(seed)
    sign, returns, regime = 1.0, np.empty(bars - 1), np.zeros(bars)
    for t in range(bars - 1):
        if rng.random() < 1.0 / mean_regime:
            sign = -sign
        returns[t] = sign * drift + vol * rng.standard_normal()
        regime[t + 1] = sign
    closes = 100.0 * np.cumprod(np.concatenate([[1.0], 1.0 + returns]))
    dates = pd.bdate_range("2010-01-04", periods=bars).strftime("%Y-%m-%d")
    pd.DataFrame({"Date": dates, "Close": closes}).to_csv(path, index=False)
    return regime


def xla_flags(devices: int) -> str:
    """This process's XLA_FLAGS with `devices` simulated CPU devices instead of its own count (for a subprocess)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", "")).split()
    return " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])


def assert_rows_close(rows: list[dict], expected: list[dict], name: str) -> None:
    """Logged rows (metrics.jsonl / evaluations.jsonl) equal to `expected` key by key up to float reassociation;
    None (NaN: no finished episode yet) exactly where `expected` has it."""
    assert len(rows) == len(expected) > 0 and rows[0].keys() == expected[0].keys(), name
    for row, want in zip(rows, expected):
        for key, value in want.items():
            assert (row[key] is None) == (value is None), (name, key, row[key], value)
            np.testing.assert_allclose(np.asarray(row[key], float), np.asarray(value, float), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} {key}")
