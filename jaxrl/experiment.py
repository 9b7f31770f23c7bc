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

from jaxrl.checkpoint import git_commit, save_model
from jaxrl.config import check_against_market
from jaxrl.chunks import EVALUATIONS_FILE, METRICS_FILE, read_jsonl, run_in_chunks
from jaxrl.compiled import compiled_once
from jaxrl.data import MarketData
from jaxrl.data.from_config import PROJECT_ROOT, load_data  # noqa: F401  (PROJECT_ROOT: re-exported)
from jaxrl.data.pool import PooledMarket
from jaxrl.distributed import is_distributed, is_writer, to_host
from jaxrl.envs import is_trading_env, make_env
from jaxrl.envs.position_pool import params_on
from jaxrl.errors import UserError
from jaxrl.gate.files import gate_series, write_gate_files
from jaxrl.gate.honest import honest_lines, honest_report
from jaxrl.gate.pooled import pooled_gate_reports, pooled_lines
from jaxrl.gate.report import gate_report, gate_setup, validation_setup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.networks import torso_spec
from jaxrl.learner import Learner
from jaxrl.learner_registry import LearnerContext, learner_entry, registered_learners
from jaxrl.loggers import Trackers, console
from jaxrl.offline import oracle_notice
from jaxrl.progress import progress_printer, work_units
from jaxrl.reports.tearsheet import wants_tearsheet, write_tearsheet
from jaxrl.runlock import run_lock
from jaxrl.sharding import DATA, MEMBERS, device_mesh, mesh_shape
from jaxrl.synth.training import evaluate_synthetic, held_out_key, synthetic_builder, synthetic_report

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "pandas", "hydra-core", "gymnax")


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
    learner: Learner  # a registered learner (jaxrl.learner_registry): PPO, an offline learner, ...

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Experiment":
        env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
        agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
        agent = agent_cfg.pop("name")
        entry = learner_entry(agent)
        if entry is None:
            raise UserError(f"unknown agent {agent!r}; available: {', '.join(registered_learners(online=True))}, "
                            f"{', '.join(sorted(registered_learners(online=False)))}")
        market = load_data(cfg) if is_trading_env(env_cfg["name"]) else None
        check_against_market(cfg, market)  # lengths that must fit the data's split (none without data)
        synthetic = synthetic_builder(cfg) if market is not None else None
        env, env_params = make_env(env_cfg, market, synthetic)
        selection = SelectionConfig.from_dict(OmegaConf.to_container(cfg.selection, resolve=True))
        gate = validation = None
        if market is not None:
            gate = gate_setup(market, int(cfg.gate.rolling_window))
            validation = validation_setup(market, int(cfg.gate.rolling_window))
        torso = None
        if market is not None:  # windowed trading observations: the network group's backbone (PPO and offline)
            network = OmegaConf.to_container(cfg.network, resolve=True) if cfg.get("network") else {"name": "mlp"}
            torso = torso_spec(network, env.window, env.num_features)
        learner = entry.builder(LearnerContext(cfg, agent_cfg, env_cfg, env, env_params, gate, validation, selection,
                                               market, torso, int(cfg.seed)))
        return cls(cfg, market, env, env_params, learner)


def data_parallel_mesh(cfg: DictConfig, members: int = 1):
    """`run.data_parallel=true`: the ("members", "data") mesh over every device (`jax.devices()`, all processes)
    for `members` population members (1 for a single run), shaped by `run.mesh` or `jaxrl.sharding.mesh_shape`;
    None when off."""
    if not cfg.run.get("data_parallel", False):
        return None
    requested = cfg.run.get("mesh")
    requested = None if requested is None else [int(n) for n in requested]
    return device_mesh(*mesh_shape(len(jax.devices()), members, requested))


def split_line(learner, mesh) -> str:
    """The header line saying how `run.data_parallel` splits the work over `mesh`."""
    setting, size, unit = learner.data_axis()
    members, data = int(mesh.shape[MEMBERS]), int(mesh.shape[DATA])
    shape = f" (mesh {members} members x {data} data)" if members > 1 else ""
    split = (f"every device trains whole members ({setting}={size} not split)" if data == 1 else
             f"{setting}={size} split into {size // data} {unit} per device, gradients averaged over {data}")
    return f"devices     {mesh.size} {mesh.devices.flat[0].platform}{shape}, data-parallel: {split}"


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


def prepare_run_dir(cfg: DictConfig, out_dir: str | Path) -> Path:
    """Create the run directory and write config.yaml; a resumed run must have the same config (run.* aside).
    A process that does not write (`jaxrl.distributed`) leaves the directory alone."""
    out_dir = Path(out_dir).absolute()
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    saved = out_dir / "config.yaml"
    if cfg.run.get("resume", False) and saved.exists() and \
            _without_run(saved.read_text()) != _without_run(config_text):
        raise UserError(f"{saved}: resuming needs the same config as the interrupted run (only run.*, logger and "
                        "report may differ)")
    if is_writer():
        out_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(config_text)
    return out_dir


def run_single(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Train one configuration, gate it, write the run directory and record the attempt. Returns a dict with
    `gate`, `record`, ... (`jaxrl.run.run_experiment` dispatches populations to `jaxrl.population.run`)."""
    say = console(verbose)  # the `jaxrl` logger: Hydra's job log (<run dir>/train.log) holds it too
    with run_lock(out_dir, say=say):  # one writer per run directory (jaxrl.distributed: process 0's)
        return _train_single(cfg, out_dir, say)


def _train_single(cfg: DictConfig, out_dir: str | Path, say) -> dict[str, Any]:
    out_dir = prepare_run_dir(cfg, out_dir)
    resume = bool(cfg.run.get("resume", False))
    trackers = Trackers(cfg, out_dir, resume=resume)  # a chosen tracker's missing library fails before training
    experiment = Experiment.from_config(cfg)
    learner, market = experiment.learner, experiment.market
    mesh = data_parallel_mesh(cfg)
    if mesh is not None:  # run.data_parallel: a setting that does not divide fails here, before compiling
        learner.split_data(mesh)
    period = learner.selection.eval_every
    validating = f"validation every {period} updates, " if market is not None else "no validation (no market data), "
    say(f"jaxrl: {cfg.env.name} / {cfg.agent.name} / {market.symbol if market else '-'} seed {cfg.seed}: "
        f"{learner.num_updates} updates x {work_units(learner)}, {validating}on {jax.devices()[0].platform}")
    if mesh is not None:
        say(split_line(learner, mesh))
    say(f"run dir     {out_dir}")
    if learner.dataset_metadata is not None and oracle_notice(learner):
        say(f"WARNING     {oracle_notice(learner)}")

    on_chunk = progress_printer(learner, say)

    config = OmegaConf.to_container(cfg, resolve=True)
    state, timings = run_in_chunks(learner, int(cfg.seed), cfg.run.chunk_updates, out_dir, resume=resume,
                                   on_chunk=on_chunk, state_dir=cfg.run.get("resume_dir"),
                                   trackers=lambda first: trackers.open(first, [(None, config)]))
    # on the host: what follows runs on the writer alone (jaxrl.distributed), so no array may span processes
    params, selection = learner.chosen_params(state), state["selection"]
    if is_distributed():
        params, selection = to_host((params, selection))
    if not is_writer():
        return not_written(out_dir, timings)
    evaluated = jax.jit(learner.evaluate_gate)(params) if market is not None else None
    result = finish_attempt(cfg, experiment, out_dir, params, selection, evaluated,
                            read_jsonl(out_dir / METRICS_FILE), read_jsonl(out_dir / EVALUATIONS_FILE),
                            timings, seed=int(cfg.seed))
    say(result["summary"])
    return result


def not_written(out_dir: Path, timings: dict, **extra) -> dict[str, Any]:
    """The result on a process that trained along but does not write (`jaxrl.distributed.is_writer`): the writer's
    run directory and registry hold the gate, record and summary."""
    return {"timings": timings, "gate": None, "record": None, "out_dir": str(out_dir), "final": {},
            "summary": f"run dir     {out_dir} (written by process 0)", "written": False, **extra}


def finish_attempt(cfg: DictConfig, experiment: Experiment, out_dir: Path, params, selection, evaluated,
                   metrics_rows: list[dict], evaluations: list[dict], timings: dict, *, seed: int,
                   member: dict | None = None, gate_trials: tuple[int, float] | None = None) -> dict[str, Any]:
    """Everything after training for one model: gate report, record, checkpoint, plots, registry, quality, summary.
    `gate_trials`: (N, V) of the N models gated together (a population group), which deflate `sharpe_confidence`."""
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
    notice = oracle_notice(learner) if learner.dataset_metadata is not None else None
    if learner.dataset_metadata is not None:
        record["dataset"] = learner.dataset_metadata  # labelers, seed, hashes, behaviour, "oracle"
        record["oracle"] = bool(notice)
        if notice:
            record["warning"] = notice

    if market is not None:
        report = gate_report(
            evaluated["metrics"], market, learner.gate, threshold=cfg.gate.threshold, years=cfg.gate.years,
            exec_lag=cfg.env.exec_lag, cost_bps=cfg.env.cost_bps, returns=evaluated["returns"], trials=gate_trials,
        )
        report.update(honest_report(experiment, cfg.gate, report, params, evaluations, out_dir, member))
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
                                 "(selection.split=gate); this gate value overstates out-of-sample performance")
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
        if experiment.env.bank is not None:  # data.train_source=synthetic|mix: the gap
            num_paths = int(cfg.data.get("synthetic_paths", 64))
            env = experiment.env
            gap = compiled_once(learner, "synthetic_gap", lambda p, e, k: evaluate_synthetic(
                env, e, learner.deterministic_policy(p, e), k, num_paths, learner.gate))(
                params, experiment.env_params, held_out_key(seed))
            report["synthetic"] = synthetic_report(gap, experiment.env.bank.generator, num_paths)
            report["synthetic_real_gap"] = report["synthetic"]["rolling_sharpe_mean"] - report["rolling_sharpe_mean"]
            record["training"]["synthetic_sharpe"] = report["synthetic"]["sharpe"]
        if experiment.env.has_diagnostics:  # the environment family's own view of the gate window
            env = experiment.env
            info = compiled_once(learner, "gate_info", lambda p, e: env.gate_info(
                e, learner.deterministic_policy(p, e), learner.gate))(params, experiment.env_params)
            report["diagnostics"] = env.gate_diagnostics(jax.device_get(info), market, report)
        if isinstance(market, PooledMarket) and market.pool:  # data.pool: the same parameters gated on every pooled instrument
            pooled = [(other, params_on(experiment.env_params, other)) for other in market.pool]
            report["pool"] = pooled_gate_reports(experiment, cfg.gate, cfg.env, params, pooled)
            record["data_pool"] = market.provenance()
        record["gate"] = report
        series = gate_series(market, learner.gate.span, evaluated["exposures"], evaluated["returns"])
        write_gate_files(out_dir, report, series)
        if wants_tearsheet(cfg):  # report=tearsheet: quantstats HTML of the gate window against buy-and-hold
            result["tearsheet"] = str(write_tearsheet(
                out_dir, strategy=f"{market.symbol} {cfg.env.name}/{cfg.agent.name} seed {seed}",
                benchmark=_buy_and_hold(market.symbol, series["asset_returns"]),
                title=f"{market.symbol} {cfg.env.name}/{cfg.agent.name} seed {seed}: gate window "
                      f"{report['start']}..{report['end']}", periods_per_year=market.periods_per_year))
        result["gate"] = report
        result["series"] = {key: series[key] for key in ("dates", "exposures", "strategy_returns")}

    if cfg.run.save_checkpoint and not (out_dir / "checkpoint").exists():
        save_model(out_dir / "checkpoint", params, record)
    result["record"] = record
    from jaxrl.reports.pipeline import after_attempt  # reports import matplotlib: only when a run finishes

    after_attempt(cfg, experiment, result, params)
    result["summary"] = summarise(cfg, result)
    (out_dir / "summary.txt").write_text(result["summary"] + "\n")
    return result


def _buy_and_hold(symbol: str, asset_returns) -> str:
    return f"{symbol} buy-and-hold" if np.ndim(asset_returns) == 1 else f"{symbol} equal-weight buy-and-hold"


def _median(values) -> float:
    return float(np.median(np.asarray(values)))


def _without_run(config_text: str) -> dict:
    """A config minus what may change on resume: `run`, and where results are reported (`logger`, `report`)."""
    config = OmegaConf.to_container(OmegaConf.create(config_text))
    for key in ("run", "logger", "report"):
        config.pop(key, None)
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
    lines += honest_lines(gate)
    lines += pooled_lines(gate)
    if result.get("tearsheet"):
        lines.append(f"tear sheet  {result['tearsheet']}")
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
