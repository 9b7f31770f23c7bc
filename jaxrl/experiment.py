"""Host side of one training run: build from config, run the compiled learner in chunks, write the run directory.

Pure JAX stays in `jaxrl.agents` / `jaxrl.envs` / `jaxrl.gate`; this module does the I/O between compiled calls.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from functools import partial
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.checkpoint import git_commit, save_model, write_json_atomic
from jaxrl.data import MarketData, load_market
from jaxrl.envs import is_trading_env, make_env
from jaxrl.gate.report import gate_report, gate_setup

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "pandas", "hydra-core", "gymnax")


def resolve_data_path(path: str) -> Path:
    """Absolute paths as given; relative ones against the working directory, then the jaxrl checkout."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    shipped = PROJECT_ROOT / candidate
    return shipped if shipped.exists() else candidate


def load_data(cfg: DictConfig) -> MarketData:
    return load_market(
        resolve_data_path(cfg.data.path),
        symbol=cfg.data.get("symbol"),
        asset_class=cfg.data.get("asset_class", "tradefi"),
        years=cfg.gate.years,
        val_years=cfg.gate.val_years,
        window=cfg.env.window,
        date_column=cfg.data.get("date_column", "Date"),
        close_column=cfg.data.get("close_column", "Close"),
    )


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclasses.dataclass
class Experiment:
    """Everything built from a config: data (trading envs only), environment, gate setup and learner."""

    cfg: DictConfig
    market: MarketData | None
    env: Any
    env_params: Any
    learner: PPO

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Experiment":
        env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
        agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
        if agent_cfg.pop("name") != "ppo":
            raise ValueError(f"unknown agent {cfg.agent.name!r}; available: ppo")
        market = load_data(cfg) if is_trading_env(env_cfg["name"]) else None
        env, env_params = make_env(env_cfg, market)
        gate = gate_setup(market, int(cfg.gate.window)) if market is not None else None
        learner = PPO(PPOConfig.from_dict(agent_cfg), env, env_params, gate)
        return cls(cfg, market, env, env_params, learner)


def _scalars(tree: dict[str, Any], index: int) -> dict[str, float | None]:
    """One update's summary as JSON-ready floats; NaN (nothing measured yet) becomes None."""
    row = {name: float(np.asarray(values)[index]) for name, values in tree.items()}
    return {name: (value if np.isfinite(value) else None) for name, value in row.items()}


def train_in_chunks(learner: PPO, seed: int, chunk_updates: int, on_chunk=None):
    """Run all updates, `chunk_updates` per compiled call. Same result as `learner.train(key)` for any chunk size."""
    total = learner.config.num_updates
    chunk_updates = max(1, min(int(chunk_updates) if chunk_updates else total, total))
    start = time.perf_counter()
    runner = jax.jit(learner.init)(jax.random.PRNGKey(seed))
    compiled = {}
    timings = {"compile_s": 0.0, "run_s": 0.0}
    done = 0
    while done < total:
        size = min(chunk_updates, total - done)
        if size not in compiled:
            t0 = time.perf_counter()
            compiled[size] = jax.jit(partial(learner.run_updates, num_updates=size)).lower(runner).compile()
            timings["compile_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        runner, metrics = compiled[size](runner)
        jax.block_until_ready(runner)
        timings["run_s"] += time.perf_counter() - t0
        if on_chunk is not None:
            on_chunk(done, size, metrics, timings)
        done += size
    timings["total_s"] = time.perf_counter() - start
    return runner, timings


def run_experiment(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Train, gate and write the run directory. Returns {'gate': report or None, 'final': last summary, ...}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    experiment = Experiment.from_config(cfg)
    learner, market = experiment.learner, experiment.market
    steps_per_update = learner.config.batch_size
    total_updates = learner.config.num_updates
    say = print if verbose else (lambda *a, **k: None)
    say(f"jaxrl: {cfg.env.name} / {cfg.agent.name} / {market.symbol if market else '-'} seed {cfg.seed}: "
        f"{total_updates} updates x {steps_per_update} env steps on {jax.devices()[0].platform}")

    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    last: dict[str, float] = {}

    def on_chunk(done, size, metrics, timings):
        nonlocal last
        with open(metrics_path, "a") as handle:
            for i in range(size):
                row = {"update": done + i + 1, "env_steps": (done + i + 1) * steps_per_update}
                row.update(_scalars(metrics, i))
                handle.write(json.dumps(row) + "\n")
        last = _scalars(metrics, size - 1)
        finished = done + size
        rate = finished * steps_per_update / max(timings["run_s"], 1e-9)
        eta = (total_updates - finished) * steps_per_update / max(rate, 1e-9)
        say(f"  [{finished:>5}/{total_updates}] {finished * steps_per_update:>11,d} steps  {rate:>10,.0f} steps/s  "
            f"eta {eta:5.0f}s  episode_return {_fmt(last['episode_return'])}  reward {_fmt(last['reward_mean'])}",
            flush=True)

    runner, timings = train_in_chunks(learner, int(cfg.seed), cfg.run.chunk_updates, on_chunk)
    result: dict[str, Any] = {"final": last, "timings": timings, "gate": None, "out_dir": str(out_dir)}

    if market is not None:
        evaluated = jax.jit(learner.evaluate_gate)(runner.params)
        report = gate_report(
            evaluated["metrics"], market, learner.gate, threshold=cfg.gate.threshold, years=cfg.gate.years,
            exec_lag=cfg.env.exec_lag, cost_bps=cfg.env.cost_bps,
        )
        report.update({"env": cfg.env.name, "agent": cfg.agent.name, "seed": int(cfg.seed)})
        write_json_atomic(out_dir / "gate.json", report)
        np.savez(out_dir / "gate_series.npz", exposures=np.asarray(evaluated["exposures"]),
                 strategy_returns=np.asarray(evaluated["returns"]),
                 dates=market.dates[learner.gate.window.start + 1: learner.gate.window.start + 1
                                    + learner.gate.window.length].astype(str))
        result["gate"] = report

    if cfg.run.save_checkpoint:
        meta = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "symbol": market.symbol if market else None,
            "data_path": market.path if market else None,
            "data_sha256": market.sha256 if market else None,
            "seed": int(cfg.seed),
            "git_commit": git_commit(),
            "packages": package_versions(),
            "created": datetime.now(timezone.utc).isoformat(),
            "gate": result["gate"],
        }
        save_model(out_dir / "checkpoint", runner.params, meta)

    summary = summarise(cfg, result)
    (out_dir / "summary.txt").write_text(summary + "\n")
    say(summary)
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def summarise(cfg: DictConfig, result: dict[str, Any]) -> str:
    timings = result["timings"]
    lines = [
        f"run dir     {result['out_dir']}",
        f"time        compile {timings['compile_s']:.1f}s, run {timings['run_s']:.1f}s",
        f"training    final episode_return {_fmt(result['final'].get('episode_return'))}",
    ]
    gate = result["gate"]
    if gate is None:
        lines.append("gate        none (not a trading environment)")
    else:
        verdict = "PASSED" if gate["passed"] else "failed"
        lines += [
            f"gate        {verdict}: rolling_sharpe_mean {gate['rolling_sharpe_mean']:+.3f} vs threshold "
            f"{gate['threshold']:.2f} on {gate['symbol']} {gate['start']}..{gate['end']} ({gate['n_returns']} returns)",
            f"            sharpe {gate['sharpe']:+.2f}  total_return {gate['total_return']:+.2%}  "
            f"max_drawdown {gate['max_drawdown']:.2%}",
            f"exposure    avg |e| {gate['avg_abs_realized_exposure']:.3f}  flat ratio "
            f"{gate['flat_realized_exposure_ratio']:.1%}  mean turnover {gate['mean_turnover']:.4f}",
        ]
        if gate["flat_realized_exposure_ratio"] > 0.95:
            lines.append("warning     the policy is flat almost all the time: flat-policy collapse")
    return "\n".join(lines)
