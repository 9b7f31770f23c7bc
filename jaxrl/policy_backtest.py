"""One policy through the gate on one instrument: the pipeline of `jaxrl-backtest` (`jaxrl.backtest`, its command
line, describes the policies and the files written).

The policy is a baseline (hydra_conf/policy/) or a registered candidate. Both run through
`jaxrl.gate.backtest.evaluate`, the compiled backtest every trained agent is judged by, with the environment's
deadbands and costs. Data and gate always come from the config, so a candidate can be judged on another instrument
or a user's file; a candidate keeps its own saved env and agent settings, since its network was built for them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.baselines import BASELINES, baseline_policy, baseline_settings, on_action_grid, settings_of
from jaxrl.checkpoint import git_commit
from jaxrl.data import MarketArrays, MarketData
from jaxrl.data.from_config import load_data
from jaxrl.envs import is_trading_env, make_env
from jaxrl.errors import UserError, migrate_renamed
from jaxrl.experiment import Experiment, package_versions
from jaxrl.gate.backtest import GateSetup, Window, evaluate
from jaxrl.gate.files import gate_series, write_gate_files
from jaxrl.gate.report import gate_report, gate_setup
from jaxrl.loggers import console
from jaxrl.registry import Registry
from jaxrl.reports.scoreboard import write_scoreboard
from jaxrl.reports.tearsheet import check_report, wants_tearsheet, write_tearsheet

CANDIDATE = "candidate"
MIN_PADDED_BARS = 8192  # series are padded to a power of two >= this, so instruments share compiled backtests


class CandidateNotFound(UserError, LookupError):
    """`policy=candidate` named no candidate, or one the registry does not hold."""


# ---- baselines: one compiled backtest per (baseline, settings, env shape, gate length) -------------------------
_COMPILED: dict[tuple, Any] = {}


def _padded_bars(num_bars: int) -> int:
    return max(MIN_PADDED_BARS, 1 << (int(num_bars) - 1).bit_length())


def _pad(series, size: int, mode: str = "constant"):
    extra = size - series.shape[0]
    return jnp.pad(series, [(0, extra)] + [(0, 0)] * (series.ndim - 1), mode=mode)


def backtest_baseline(name: str, market: MarketData, env, env_params, setup: GateSetup, **settings: Any):
    """`evaluate` (metrics, exposures, returns) of a baseline on `market` through `env`.

    The market arrays and the window start are arguments of the compiled function, not constants, and the series are
    padded to a common length (the padding lies after the last bar, which neither the policy nor the env ever
    reads), so every instrument with the same gate length reuses one compile per baseline.
    """
    settings = baseline_settings(name, **settings)
    length, periods, rolling = setup.span.length, setup.periods_per_year, setup.rolling_window
    key = (name, tuple(sorted(settings.items())), env.shape_key(), length, periods, rolling)
    compiled = _COMPILED.get(key)
    if compiled is None:

        def run(env_params, arrays: MarketArrays, start):
            policy = baseline_policy(name, arrays, periods, **settings)
            policy = on_action_grid(policy, env.action_grid)
            return evaluate(env, env_params, policy, GateSetup(Window(start, length), periods, rolling))

        compiled = _COMPILED[key] = jax.jit(run)

    size = _padded_bars(market.num_bars)
    arrays = MarketArrays(closes=_pad(market.arrays.closes, size, "edge"), returns=_pad(market.arrays.returns, size),
                          features=_pad(market.arrays.features, size))
    if hasattr(env_params, "returns") and hasattr(env_params, "features"):
        env_params = env_params.replace(returns=_pad(env_params.returns, size),
                                        features=_pad(env_params.features, size))
    return compiled(env_params, arrays, jnp.asarray(setup.span.start, jnp.int32))


# ---- candidates -------------------------------------------------------------------------------------------------
def candidate_config(saved: Mapping[str, Any], cfg: DictConfig) -> DictConfig:
    """The candidate's saved config with this command line's data block (replaced) and gate block (merged over)."""
    merged = OmegaConf.create(migrate_renamed(dict(saved)))  # a candidate saved before a key was renamed
    merged.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    saved_gate = merged.get("gate") or OmegaConf.create({})
    merged.gate = OmegaConf.merge(saved_gate, OmegaConf.to_container(cfg.gate, resolve=True))
    return merged


def load_candidate(cfg: DictConfig, registry: Registry):
    """(params, metadata, config to rebuild it with) of `policy.id`; CandidateNotFound names what exists."""
    candidate_id = cfg.policy.get("id")
    if not candidate_id:
        raise CandidateNotFound(
            f"policy=candidate needs policy.id=<candidate_id>; candidates in {registry.root}: {registry.candidates()}"
        )
    try:
        params, metadata = registry.load_candidate(str(candidate_id))
    except KeyError as exc:
        raise CandidateNotFound(
            f"no candidate {candidate_id!r} in registry {registry.root!r}; "
            f"candidates there: {registry.candidates() or 'none'}"
        ) from exc
    saved = metadata.get("config")
    if not isinstance(saved, Mapping) or "env" not in saved or "agent" not in saved:
        raise UserError(f"candidate {candidate_id!r} in {registry.root!r} has no saved config with env and agent "
                         f"blocks; cannot rebuild its policy")
    return params, metadata, candidate_config(saved, cfg)


# ---- the run ----------------------------------------------------------------------------------------------------
def run_backtest(cfg: DictConfig | Mapping[str, Any], out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Backtest `cfg.policy` on `cfg.data` through the gate; write the run directory; return the gate report.

    The report is the gate report of docs/GATE_SPEC.md plus `policy`, `env`, `kind` ("baseline" or "candidate"),
    `optimistic`, the policy settings and, for a recorded baseline, its `attempt_id`.
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    check_report(cfg)  # report=tearsheet without quantstats fails before anything runs
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    registry_cfg = cfg.get("registry") or {}
    registry = Registry(registry_cfg.get("root", "registry"))
    name = str(cfg.policy.name)
    extra: dict[str, Any] = {"policy": name}

    if name == CANDIDATE:
        params, metadata, run_cfg = load_candidate(cfg, registry)
        experiment = Experiment.from_config(run_cfg)
        market, env, env_params = experiment.market, experiment.env, experiment.env_params
        if market is None:
            raise UserError(f"candidate {cfg.policy.id!r} was trained on env {run_cfg.env.name!r}, "
                             "which has no market data to backtest on")
        setup = gate_setup(market, int(run_cfg.gate.rolling_window))
        policy = experiment.learner.deterministic_policy
        evaluated = jax.jit(lambda p: evaluate(env, env_params, policy(p), setup))(params)
        selection = metadata.get("selection") or {}
        extra.update({
            "kind": "candidate",
            "candidate_id": str(cfg.policy.id),
            "agent": metadata.get("agent", run_cfg.agent.get("name")),
            "network": metadata.get("network"),
            "seed": metadata.get("seed"),
            # Judged again on the very data its checkpoint was selected on with the gate window: still optimistic.
            "optimistic": bool(selection.get("optimistic", False)) and metadata.get("data_sha256") == market.sha256,
            "trained_on": {"symbol": metadata.get("symbol"), "data_sha256": metadata.get("data_sha256")},
        })
        env_cfg = run_cfg.env
    else:
        if name not in BASELINES:
            raise UserError(f"unknown policy {name!r}; available: {[*BASELINES, CANDIDATE]}")
        if not is_trading_env(cfg.env.name):
            raise UserError(f"baselines trade a market: env {cfg.env.name!r} is not a trading env")
        settings = baseline_settings(name, **settings_of(OmegaConf.to_container(cfg.policy, resolve=True)))
        market = load_data(cfg)
        env, env_params = make_env(OmegaConf.to_container(cfg.env, resolve=True), market)
        setup = gate_setup(market, int(cfg.gate.rolling_window))
        evaluated = backtest_baseline(name, market, env, env_params, setup, **settings)
        extra.update({"kind": "baseline", "settings": settings, "optimistic": False})
        env_cfg = cfg.env

    report = gate_report(
        evaluated["metrics"], market, setup, threshold=float(cfg.gate.threshold), years=float(cfg.gate.years),
        exec_lag=int(env_cfg.get("exec_lag", 0)), cost_bps=float(env_cfg.get("cost_bps", 0.0)),
        returns=evaluated["returns"],
    )
    report.update(extra)
    report["env"] = str(env_cfg.name)

    series = gate_series(market, setup.span, evaluated["exposures"], evaluated["returns"])
    if cfg.get("plots", True):
        from jaxrl.reports.plots import plot_backtest  # matplotlib only when plots are wanted

        plot_backtest(out_dir, series["dates"], series["strategy_returns"], series["exposures"],
                      series["asset_returns"], report["threshold"], report["periods_per_year"],
                      window=report["rolling_window"], title=f"{report['symbol']} {_policy_label(report)}")

    if report["kind"] == "baseline" and registry_cfg.get("enabled", True):
        record = baseline_record(report, market, cfg)
        registry.record_attempt(record)
        report["attempt_id"] = record["attempt_id"]
        report["registry"] = registry.root
        write_scoreboard(registry)  # baselines are the yardstick on the scoreboard: keep it current

    write_gate_files(out_dir, report, series)
    tearsheet = None
    if wants_tearsheet(cfg):  # report=tearsheet: quantstats HTML of the gate window against buy-and-hold
        symbol = report["symbol"]
        benchmark = (f"{symbol} buy-and-hold" if np.ndim(series["asset_returns"]) == 1
                     else f"{symbol} equal-weight buy-and-hold")
        tearsheet = write_tearsheet(
            out_dir, strategy=f"{symbol} {_policy_label(report)}", benchmark=benchmark,
            title=f"{symbol} {_policy_label(report)}: gate window {report['start']}..{report['end']}",
            periods_per_year=report["periods_per_year"])
    summary = summarise(report, out_dir, tearsheet)
    (out_dir / "summary.txt").write_text(summary + "\n")
    console(verbose)(summary)  # the `jaxrl` logger: Hydra's job log (<run dir>/backtest.log) holds it too
    return report


def baseline_record(report: Mapping[str, Any], market: MarketData, cfg: DictConfig) -> dict[str, Any]:
    """The registry's attempt record of a baseline backtest (no params, so never a candidate)."""
    now = datetime.now(timezone.utc)
    policy = report["policy"]
    return {
        "attempt_id": f"{now.strftime('%Y%m%dT%H%M%S')}-{market.symbol}-{report['env']}-baseline-{policy}-"
                      f"{uuid.uuid4().hex[:6]}",
        "created": now.isoformat(),
        "kind": "baseline",
        "symbol": market.symbol,
        "env": report["env"],
        "agent": "baseline",
        "network": None,
        "seed": None,
        "policy": policy,
        "settings": report.get("settings"),
        "gate": {k: v for k, v in report.items() if k not in ("settings", "attempt_id", "registry")},
        "validation": None,
        "selection": None,
        "history": None,
        "training": None,
        "candidate_id": None,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data_path": market.path,
        "data_sha256": market.sha256,
        "git_commit": git_commit(),
        "packages": package_versions(),
    }


def _policy_label(report: Mapping[str, Any]) -> str:
    if report.get("kind") == "candidate":
        return f"candidate {report.get('candidate_id')}"
    return str(report.get("policy"))


def summarise(report: Mapping[str, Any], out_dir: str | Path, tearsheet: Path | None = None) -> str:
    verdict = "PASSED" if report["passed"] else "failed"
    lines = [
        f"backtest    {_policy_label(report)} on {report['symbol']} {report['start']}..{report['end']} "
        f"({report['n_returns']} returns, cost {report['cost_bps']:g} bps, exec lag {report['exec_lag']})",
        f"gate        {verdict}: rolling_sharpe_mean {report['rolling_sharpe_mean']:+.3f} vs threshold "
        f"{report['threshold']:.2f}" + ("  (OPTIMISTIC: selected on this window)" if report.get("optimistic") else ""),
        f"            sharpe {report['sharpe']:+.2f}  total_return {report['total_return']:+.2%}  "
        f"max_drawdown {report['max_drawdown']:.2%}",
        f"exposure    avg |e| {report['avg_abs_realized_exposure']:.3f}  flat ratio "
        f"{report['flat_realized_exposure_ratio']:.1%}  mean turnover {report['mean_turnover']:.4f}",
        f"run dir     {out_dir}",
    ]
    if report.get("attempt_id"):
        lines.append(f"registry    attempt {report['attempt_id']} in {report.get('registry')}")
    if tearsheet is not None:
        lines.append(f"tear sheet  {tearsheet}")
    return "\n".join(lines)

