"""Host side of one training run: build from config, run the compiled learner in chunks, write the run directory,
record the attempt in the registry.

Pure JAX stays in `jaxrl.agents` / `jaxrl.envs` / `jaxrl.gate`; this module does the I/O between compiled calls.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.checkpoint import git_commit, save_model, write_json_atomic
from jaxrl.config import check_against_market, validate_config
from jaxrl.chunks import EVALUATIONS_FILE, METRICS_FILE, read_jsonl, run_in_chunks
from jaxrl.data import MarketData, SanityLimits, load_market
from jaxrl.envs import is_trading_env, make_env
from jaxrl.gate.report import gate_report, gate_setup, validation_setup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.networks import torso_spec
from jaxrl.offline import ALGORITHMS as OFFLINE_AGENTS, make_offline_learner, oracle_notice
from jaxrl.synth.training import evaluate_synthetic, held_out_key, synthetic_report, synthetic_settings

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
    """The data of the run's environment: one instrument, a basket (`data.kind: basket`) or funding rates."""
    years, val_years, window = cfg.gate.years, cfg.gate.val_years, int(cfg.env.window)
    if cfg.env.name == "funding":  # its data comes from env.source (generated or a user's CSV); data/ is ignored
        from jaxrl.data.funding import funding_from_config

        return funding_from_config(OmegaConf.to_container(cfg.env.source, resolve=True), years, val_years, window,
                                   resolve=resolve_data_path)
    if cfg.data.get("kind", "single") == "basket":
        from jaxrl.data.multi import basket_from_config

        return basket_from_config(OmegaConf.to_container(cfg.data, resolve=True), years, val_years, window,
                                  resolve=resolve_data_path)
    if cfg.env.name == "portfolio":
        raise ValueError("env=portfolio trades several instruments: run with data=basket "
                         "(or another data config with kind: basket)")
    return load_market(
        resolve_data_path(cfg.data.path),
        symbol=cfg.data.get("symbol"),
        asset_class=cfg.data.get("asset_class", "tradefi"),
        years=cfg.gate.years,
        val_years=cfg.gate.val_years,
        window=cfg.env.window,
        date_column=cfg.data.get("date_column", "Date"),
        close_column=cfg.data.get("close_column", "Close"),
        sanity=SanityLimits.for_asset_class(cfg.data.get("asset_class", "tradefi"), cfg.data),
    )


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def network_name(cfg: DictConfig) -> str:
    network = cfg.get("network")
    return str(network.get("name", "mlp")) if network is not None else "mlp"


@dataclasses.dataclass
class Experiment:
    """Everything built from a config: data (trading envs only), environment, gate setups and learner."""

    cfg: DictConfig
    market: MarketData | None
    env: Any
    env_params: Any
    learner: Any  # PPO, or an offline learner (jaxrl.offline)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Experiment":
        env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
        agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
        agent = agent_cfg.pop("name")
        if agent != "ppo" and agent not in OFFLINE_AGENTS:
            raise ValueError(f"unknown agent {agent!r}; available: ppo, {', '.join(sorted(OFFLINE_AGENTS))}")
        market = load_data(cfg) if is_trading_env(env_cfg["name"]) else None
        check_against_market(cfg, market)  # lengths that must fit the data's split (none without data)
        synthetic = synthetic_settings(cfg) if market is not None else None
        env, env_params = make_env(env_cfg, market, synthetic)
        selection = SelectionConfig.from_dict(OmegaConf.to_container(cfg.selection, resolve=True))
        gate = validation = None
        if market is not None:
            gate = gate_setup(market, int(cfg.gate.window))
            validation = validation_setup(market, int(cfg.gate.window))
        torso = None
        if market is not None:  # windowed trading observations: the network group's backbone (PPO and offline)
            network = OmegaConf.to_container(cfg.network, resolve=True) if cfg.get("network") else {"name": "mlp"}
            torso = torso_spec(network, env.window, env.num_features)
        if agent in OFFLINE_AGENTS:  # learned from a labeler dataset (cfg.labeler) or agent.dataset_path
            labeler_cfg = OmegaConf.to_container(cfg.labeler, resolve=True) if cfg.get("labeler") else None
            learner = make_offline_learner({"name": agent, **agent_cfg}, labeler_cfg, env, env_params, gate,
                                           validation, selection, int(cfg.seed), env_cfg=env_cfg, market=market,
                                           torso=torso)
            return cls(cfg, market, env, env_params, learner)
        learner = PPO(PPOConfig.from_dict(agent_cfg), env, env_params, gate, validation, selection, torso)
        return cls(cfg, market, env, env_params, learner)


def training_evidence(metrics_rows: list[dict], period: int, periods_per_year: int | None) -> dict[str, Any]:
    """What the quality report needs about training itself: Sharpe of training episodes, reward-P&L alignment."""
    evidence: dict[str, Any] = {}
    if not metrics_rows:
        return evidence
    returns = [r.get("episode_return") for r in metrics_rows if r.get("episode_return") is not None]
    evidence["final_episode_return"] = returns[-1] if returns else None
    tail = metrics_rows[-period:]
    if periods_per_year and all(r.get("strategy_return_std") is not None for r in tail):
        means = np.array([r["strategy_return"] for r in tail])
        variances = np.array([r["strategy_return_std"] ** 2 for r in tail])
        pooled_std = float(np.sqrt(variances.mean() + means.var()))
        evidence["train_sharpe"] = float(means.mean() / pooled_std * np.sqrt(periods_per_year)) if pooled_std > 0 else 0.0
        reward = np.array([r["reward_mean"] for r in metrics_rows])
        pnl = np.array([r["strategy_return"] for r in metrics_rows])
        if reward.std() > 0 and pnl.std() > 0 and len(reward) > 2:
            evidence["reward_pnl_correlation"] = float(np.corrcoef(reward, pnl)[0, 1])
    return evidence


def _history_lists(rows: list[dict]) -> dict[str, list]:
    return {name: [row.get(name) for row in rows] for name in (rows[0] if rows else {})}


def progress_printer(learner, say, members: int = 1):
    """`on_chunk` for `run_in_chunks`: one line per chunk with steps/s (all members together), ETA, the latest
    loss or reward and the validation score (medians over a population's members)."""
    period, steps_per_update = learner.selection.eval_every, learner.steps_per_update * members

    def on_chunk(done, total, metrics, history, state, timings):
        rate = (done - timings["resumed_from_period"]) * period * steps_per_update / max(timings["run_s"], 1e-9)
        eta = (total - done) * period * steps_per_update / max(rate, 1e-9)
        shown = next(name for name in ("reward_mean", "actor_loss", "critic_loss") if name in metrics)
        line = f"  [{done * period:>5}/{total * period}] {done * period * steps_per_update:>11,d} steps  " \
               f"{rate:>9,.0f} steps/s  eta {eta:5.0f}s  {shown.split('_')[0]} {_median(metrics[shown][-1]):+.4f}"
        if history:
            selection = state["selection"]
            found = np.asarray(selection.best_update) >= 0  # members with a selectable (not flat) evaluation
            best = np.asarray(selection.best_score)[found]
            line += f"  val {_median(history[learner.selection.metric][-1]):+.3f}  best " + \
                (f"{_median(best):+.3f}" if best.size else "n/a")
            if np.ndim(selection.best_update) == 0 and found:
                line += f"@{int(selection.best_update)}"
            elif np.ndim(selection.best_update) and not found.all():
                line += f" ({int(found.sum())}/{found.size} selected)"
            stopped = np.asarray(selection.stopped)
            if stopped.any():
                line += f"  FLAT EARLY STOP ({int(stopped.sum())}/{stopped.size})" if stopped.ndim else \
                    "  FLAT EARLY STOP"
        say(line, flush=True)

    return on_chunk


def prepare_run_dir(cfg: DictConfig, out_dir: str | Path) -> Path:
    """Create the run directory and write config.yaml; a resumed run must have the same config (run.* aside)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    saved = out_dir / "config.yaml"
    if cfg.run.get("resume", False) and saved.exists() and \
            _without_run(saved.read_text()) != _without_run(config_text):
        raise ValueError(f"{saved}: resuming needs the same config as the interrupted run (only run.* may differ)")
    saved.write_text(config_text)
    return out_dir


def run_experiment(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Train, gate, write the run directory and record the attempt. Returns a dict with `gate`, `record`, ...
    With `run.num_seeds > 1` or a `sweep.*` list, trains a population instead (`jaxrl.population.run`)."""
    from jaxrl.population import is_population

    validate_config(cfg)  # a bad type, range or key fails here, before any data is read or anything compiled
    if is_population(cfg):
        from jaxrl.population.run import run_population

        return run_population(cfg, out_dir, verbose=verbose)
    out_dir = prepare_run_dir(cfg, out_dir)
    resume = bool(cfg.run.get("resume", False))
    experiment = Experiment.from_config(cfg)
    learner, market = experiment.learner, experiment.market
    period = learner.selection.eval_every
    steps_per_update = learner.steps_per_update
    offline = hasattr(learner, "dataset_metadata")
    say = print if verbose else (lambda *a, **k: None)
    say(f"jaxrl: {cfg.env.name} / {cfg.agent.name} / {market.symbol if market else '-'} seed {cfg.seed}: "
        f"{learner.num_updates} updates x {steps_per_update} {'samples' if offline else 'env steps'}, "
        f"validation every {period} updates, on {jax.devices()[0].platform}")
    if offline and oracle_notice(learner):
        say(f"WARNING     {oracle_notice(learner)}")

    on_chunk = progress_printer(learner, say)

    state, timings = run_in_chunks(learner, int(cfg.seed), cfg.run.chunk_updates, out_dir, resume=resume,
                                   on_chunk=on_chunk, state_dir=cfg.run.get("resume_dir"))
    params = learner.chosen_params(state)
    evaluated = jax.jit(learner.evaluate_gate)(params) if market is not None else None
    result = finish_attempt(cfg, experiment, out_dir, params, state["selection"], evaluated,
                            read_jsonl(out_dir / METRICS_FILE), read_jsonl(out_dir / EVALUATIONS_FILE),
                            timings, seed=int(cfg.seed))
    say(result["summary"])
    return result


def compiled_once(learner, name: str, fn):
    """`jax.jit(fn)`, made once per learner: a population's members (and resumed runs) reuse one compiled program.
    `fn` must take everything that differs between calls as arguments."""
    return learner.__dict__.setdefault(f"_jit_{name}", jax.jit(fn))


def finish_attempt(cfg: DictConfig, experiment: Experiment, out_dir: Path, params, selection, evaluated,
                   metrics_rows: list[dict], evaluations: list[dict], timings: dict, *, seed: int,
                   member: dict | None = None) -> dict[str, Any]:
    """Everything after training for one model: gate report, record,
    checkpoint, plots, registry, quality report and summary."""
    learner, market = experiment.learner, experiment.market
    period = learner.selection.eval_every
    result: dict[str, Any] = {"timings": timings, "gate": None, "out_dir": str(out_dir), "record": None,
                              "final": metrics_rows[-1] if metrics_rows else {}}
    record = {
        "kind": "training",
        "created": datetime.now(timezone.utc).isoformat(),
        "symbol": market.symbol if market else None,
        "env": str(cfg.env.name),
        "agent": str(cfg.agent.name),
        "network": network_name(cfg),
        "seed": seed,
        "member": member,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data_path": market.path if market else None,
        "data_sha256": market.sha256 if market else None,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "training": training_evidence(metrics_rows, period, market.periods_per_year if market else None),
    }
    notice = oracle_notice(learner) if hasattr(learner, "dataset_metadata") else None
    if hasattr(learner, "dataset_metadata"):
        record["dataset"] = learner.dataset_metadata  # labelers, seed, hashes, behaviour, "oracle"
        record["oracle"] = bool(notice)
        if notice:
            record["warning"] = notice

    if market is not None:
        report = gate_report(
            evaluated["metrics"], market, learner.gate, threshold=cfg.gate.threshold, years=cfg.gate.years,
            exec_lag=cfg.env.exec_lag, cost_bps=cfg.env.cost_bps,
        )
        report.update({"env": str(cfg.env.name), "agent": str(cfg.agent.name), "seed": seed,
                       "optimistic": learner.selection.optimistic,
                       "real_data": not bool(getattr(market, "is_synthetic", False))})
        if member:
            report["member"] = member
        if not report["real_data"]:
            report["warning"] = ("generated data: this gate value does not judge real market data, so the run can "
                                 "never become a candidate")
        if learner.selection.optimistic:
            report["warning"] = ("OPTIMISTIC: checkpoints were selected on the gate window itself "
                                 "(selection.window=gate); this gate value overstates out-of-sample performance")
        if "oracle" in record:
            report["oracle"] = record["oracle"]
            if notice:
                report["warning"] = " ".join(filter(None, [report.get("warning"), notice]))
        best_update = int(selection.best_update)
        record["selection"] = {
            **dataclasses.asdict(learner.selection),
            "optimistic": learner.selection.optimistic,
            "best_update": best_update,
            "best_score": float(selection.best_score) if best_update >= 0 else None,
            "evals": len(evaluations),
            "stopped": bool(selection.stopped),
            "stop_update": int(selection.stop_update) if bool(selection.stopped) else None,
            "stop_reason": (f"policy flat (flat ratio > {learner.selection.flat_stop_ratio}) in "
                            f"{learner.selection.flat_stop_evals} consecutive evaluations")
            if bool(selection.stopped) else None,
            "chosen": "best_validation" if best_update >= 0 else "final (no selectable evaluation)",
        }
        record["validation"] = next((row for row in evaluations if row.get("update") == best_update), None)
        record["history"] = _history_lists(evaluations)
        if getattr(experiment.env, "bank", None) is not None:  # data.train_source=synthetic|mix: the gap
            num_paths = int(cfg.data.get("synthetic_paths", 64))
            env = experiment.env
            gap = compiled_once(learner, "synthetic_gap", lambda p, e, k: evaluate_synthetic(
                env, e, learner.deterministic_policy(p, e), k, num_paths, learner.gate))(
                params, experiment.env_params, held_out_key(seed))
            report["synthetic"] = synthetic_report(gap, experiment.env.bank.generator, num_paths)
            report["synthetic_real_gap"] = report["synthetic"]["rolling_sharpe_mean"] - report["rolling_sharpe_mean"]
            record["training"]["synthetic_sharpe"] = report["synthetic"]["sharpe"]
        if hasattr(experiment.env, "gate_diagnostics"):  # the environment family's own view of the gate window
            env = experiment.env
            info = compiled_once(learner, "gate_info", lambda p, e: env.gate_info(
                e, learner.deterministic_policy(p, e), learner.gate))(params, experiment.env_params)
            report["diagnostics"] = env.gate_diagnostics(jax.device_get(info), market, report)
        record["gate"] = report
        write_json_atomic(out_dir / "gate.json", report)
        gate_dates = market.dates[learner.gate.window.start + 1: learner.gate.window.start + 1
                                  + learner.gate.window.length]
        np.savez(out_dir / "gate_series.npz", exposures=np.asarray(evaluated["exposures"]),
                 strategy_returns=np.asarray(evaluated["returns"]), dates=gate_dates.astype(str))
        result["gate"] = report
        result["series"] = {"dates": gate_dates, "exposures": np.asarray(evaluated["exposures"]),
                            "strategy_returns": np.asarray(evaluated["returns"])}

    if cfg.run.save_checkpoint and not (out_dir / "checkpoint").exists():
        save_model(out_dir / "checkpoint", params, record)
    result["record"] = record
    from jaxrl.reports.pipeline import after_attempt  # reports import matplotlib: only when a run finishes

    after_attempt(cfg, experiment, result, params)
    result["summary"] = summarise(cfg, result)
    (out_dir / "summary.txt").write_text(result["summary"] + "\n")
    return result


def _median(values) -> float:
    return float(np.median(np.asarray(values)))


def _without_run(config_text: str) -> dict:
    config = OmegaConf.to_container(OmegaConf.create(config_text))
    config.pop("run", None)
    return config


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def summarise(cfg: DictConfig, result: dict[str, Any]) -> str:
    timings = result["timings"]
    record = result["record"] or {}
    lines = [
        f"run dir     {result['out_dir']}",
        f"time        compile {timings['compile_s']:.1f}s, run {timings['run_s']:.1f}s",
        f"training    final episode_return {_fmt(result['final'].get('episode_return'))}",
    ]
    gate = result["gate"]
    if gate is None:
        lines.append("gate        none (not a trading environment)")
        return "\n".join(lines)
    selection = record.get("selection", {})
    verdict = "PASSED" if gate["passed"] else "failed"
    lines += [
        f"selection   {selection.get('chosen')} at update {selection.get('best_update')} "
        f"(validation {selection.get('metric')} {_fmt(selection.get('best_score'))}, {selection.get('evals')} evals)",
        f"gate        {verdict}: rolling_sharpe_mean {gate['rolling_sharpe_mean']:+.3f} vs threshold "
        f"{gate['threshold']:.2f} on {gate['symbol']} {gate['start']}..{gate['end']} ({gate['n_returns']} returns)",
        f"            sharpe {gate['sharpe']:+.2f}  total_return {gate['total_return']:+.2%}  "
        f"max_drawdown {gate['max_drawdown']:.2%}",
        f"exposure    avg |e| {gate['avg_abs_realized_exposure']:.3f}  flat ratio "
        f"{gate['flat_realized_exposure_ratio']:.1%}  mean turnover {gate['mean_turnover']:.4f}",
    ]
    if selection.get("stopped"):
        lines.append(f"early stop  at update {selection['stop_update']}: {selection['stop_reason']}")
    if (gate.get("diagnostics") or {}).get("summary"):
        lines.append(f"{str(cfg.env.name):<12}{gate['diagnostics']['summary']}")
    if gate.get("synthetic"):
        synthetic = gate["synthetic"]
        lines.append(f"synthetic   rolling_sharpe_mean {synthetic['rolling_sharpe_mean']:+.3f} (std "
                     f"{synthetic['rolling_sharpe_mean_std']:.3f}) over {synthetic['num_paths']} held-out "
                     f"{synthetic['generator']} paths; gap to the gate {gate['synthetic_real_gap']:+.3f}")
    if gate.get("warning"):
        lines.append(f"WARNING     {gate['warning']}")
    quality = record.get("quality")
    if quality:
        lines.append(f"quality     {quality['label']}: {quality['next_action']}")
    root = cfg.registry.root
    if record.get("candidate_id"):
        lines.append(f"registry    CANDIDATE {record['candidate_id']} in {root}")
    elif record.get("attempt_id"):
        lines.append(f"registry    attempt {record['attempt_id']} recorded in {root} (gate failed: no candidate)")
    return "\n".join(lines)
