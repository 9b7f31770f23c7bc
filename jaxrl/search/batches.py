"""`python -m jaxrl.search`: Optuna proposes batches of trials; each batch trains as one population (one compile).

Every trial is a setting of traced values (`search.params`, see `jaxrl.search.space`) trained for `run.num_seeds`
seeds (seeds `seed`, `seed+1`, ... as in a population). A batch of `search.batch` trials is asked from the study at
once (`study.ask()`), trained as ONE population through `jaxrl.population.run` (members = trials x seeds, one
compiled, vmapped program), and each trial's score is told back (`study.tell`): the median over its seeds.

The objective (`search.objective`):
- `validation` (default): the selection score, the same validation-window score (or fold aggregate) that chose each
  member's checkpoint. The gate window is never looked at while searching, so the best trial's gate value stays an
  out-of-sample judgement, like a single run's.
- `gate`: the gate value itself. Searching on it tunes on the gate window: the best trial's gate value is then
  optimistic (a maximum over trials, not a test), and the summary says so.
- `episode_return`: the final training episode return, for environments without market data (no validation).
Every trial's gate value is recorded next to its objective either way (`search.json`), with the validation-to-gate
Spearman over the trials: near 0 or negative, the search is fitting noise in the validation window.

Directory (`search.dir`, default `searches/<study_name>`):

    optuna.db            the study (SQLite; Optuna's own storage: optuna-dashboard and `optuna` read it)
    batch000/            one population run dir (plan.json, population.json, members/<label>/gate.json, ...)
      trials.json        the batch's trials (Optuna numbers and values), written before training
      told.json          each trial's objective and gate value, written once Optuna has been told
    search.json          every trial, the best one and the validation-to-gate Spearman

Resuming: running the same command again continues the study. A batch with `trials.json` but no `told.json` (the
process was killed) is resumed (`run.resume=true`: finished groups are read back, an interrupted one continues
from its saved state) and then told; a trial asked but never written to a batch is marked failed. New batches are
then asked until the study holds `search.trials` finished trials, so a larger `search.trials` extends a study.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf

from jaxrl.checkpoint import write_json_atomic
from jaxrl.config import validate_config
from jaxrl.edge import recipe_of_config
from jaxrl.envs import is_trading_env
from jaxrl.errors import UserError
from jaxrl.gate.overfitting import spearman
from jaxrl.population import Member, sweep_lists
from jaxrl.population.members import num_seeds
from jaxrl.population.run import run_population
from jaxrl.runlock import run_lock
from jaxrl.search import study_storage
from jaxrl.search.space import check_space, suggest

OBJECTIVES = ("validation", "gate", "episode_return")
SAMPLERS = ("tpe", "random")
TRIALS_FILE, TOLD_FILE, SUMMARY_FILE = "trials.json", "told.json", "search.json"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    space: dict[str, dict[str, Any]]
    trials: int
    batch: int
    objective: str
    study_name: str
    directory: Path
    sampler: str
    seed: int

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> "SearchSettings":
        node = dict(node)
        for key in ("trials", "batch"):
            if not isinstance(node.get(key), int) or isinstance(node.get(key), bool) or node[key] < 1:
                raise UserError(f"search.{key} must be an integer >= 1, got {node.get(key)!r}")
        if node.get("objective") not in OBJECTIVES:
            raise UserError(f"search.objective={node.get('objective')!r}: expected one of {', '.join(OBJECTIVES)}")
        if node.get("sampler") not in SAMPLERS:
            raise UserError(f"search.sampler={node.get('sampler')!r}: expected one of {', '.join(SAMPLERS)}")
        if not node.get("study_name") or not node.get("dir"):
            raise UserError("search.study_name and search.dir must be set (the study's name and directory)")
        return cls(check_space(node.get("params") or {}), node["trials"], node["batch"], node["objective"],
                   str(node["study_name"]), Path(str(node["dir"])).expanduser().absolute(), node["sampler"],
                   int(node.get("seed") or 0))


def training_config(cfg: DictConfig, prepare: Callable[[DictConfig], DictConfig]) -> DictConfig:
    """The training config every batch starts from: `cfg` without its `search` block, prepared like
    `jaxrl.train`'s (`prepare`: absolute paths, agent_overrides) and validated."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("search", None)
    train = prepare(OmegaConf.create(plain))
    lists = sweep_lists(train)
    if lists:
        name = next(iter(lists))
        raise UserError(f"sweep.{name}: a sweep list would cross every trial; search it with "
                        f"'+search.params.{name}={{low:...,high:...}}' (or choices) instead")
    validate_config(train)
    return train


def trial_members(trials: list[dict[str, Any]], first_seed: int, seeds: int) -> list[Member]:
    """A batch's population: every trial's values for `seeds` seeds, trial-major (member index = k * seeds + j)."""
    return [Member(k * seeds + j, first_seed + j, {n: float(v) for n, v in trial["params"].items()})
            for k, trial in enumerate(trials) for j in range(seeds)]


def trial_scores(rows: list[dict[str, Any]], trials: list[dict[str, Any]], seeds: int,
                 objective: str) -> list[dict[str, Any]]:
    """Each trial's objective, gate and validation value: the median over its seeds' population rows."""
    by_index = {row["index"]: row for row in rows}
    key = {"validation": "validation", "gate": "gate", "episode_return": "final_episode_return"}[objective]
    scores = []
    for k, trial in enumerate(trials):
        mine = [by_index[k * seeds + j] for j in range(seeds)]
        score = {name: _median([row[field] for row in mine]) for name, field in
                 (("gate", "gate"), ("validation", "validation"), ("episode_return", "final_episode_return"))}
        scores.append({"number": trial["number"], "params": trial["params"], "value": _median([r[key] for r in mine]),
                       **score, "passed": sum(bool(row["passed"]) for row in mine),
                       "members": [row["label"] for row in mine]})
    return scores


def open_study(settings: SearchSettings) -> optuna.Study:
    """The study in `settings.directory` (created or loaded), maximising; the sampler is seeded from
    `search.seed` plus the trials already in the study, so a resumed search does not repeat its first draws."""
    storage = study_storage(settings.directory)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    seed = settings.seed + (existing[settings.study_name].n_trials if settings.study_name in existing else 0)
    with warnings.catch_warnings():  # constant_liar is marked experimental; it keeps one batch's trials apart
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = (optuna.samplers.TPESampler(seed=seed, constant_liar=True) if settings.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(storage=storage, study_name=settings.study_name, sampler=sampler,
                                direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"{storage}: study {settings.study_name!r} minimises; jaxrl.search maximises its objective "
                        f"(use another search.study_name or search.dir)")
    return study


def check_recipe(study: optuna.Study, recipe: str, settings: SearchSettings) -> None:
    """One study, one training config (its recipe: the config minus bookkeeping, plus the data file's hash): a
    re-run with other data or settings would mix trials of two experiments in one ranking."""
    stored = study.user_attrs.get("recipe")
    if stored is None:
        study.set_user_attr("recipe", recipe)
    elif stored != recipe:
        raise UserError(f"{settings.directory / 'optuna.db'}: study {settings.study_name!r} was run with a different "
                        f"training config (recipe {stored}, now {recipe}); give this one its own search.study_name")


def run_search(cfg: DictConfig, prepare: Callable[[DictConfig], DictConfig], *, verbose: bool = True
               ) -> dict[str, Any]:
    """Resume unfinished batches, then ask, train and tell batches until the study holds `search.trials`
    finished trials; writes and returns the summary (`search.json`)."""
    say = print if verbose else (lambda *a, **k: None)
    settings = SearchSettings.from_config(OmegaConf.to_container(cfg.search, resolve=True))
    train = training_config(cfg, prepare)
    if settings.objective != "episode_return" and not is_trading_env(str(train.env.name)):
        raise UserError(f"search.objective={settings.objective}: env={train.env.name} has no market data, so no "
                        f"validation or gate; use search.objective=episode_return")
    seeds = num_seeds(train)
    settings.directory.mkdir(parents=True, exist_ok=True)
    with run_lock(settings.directory, say=say):
        study = open_study(settings)
        check_recipe(study, recipe_of_config(train), settings)
        say(f"jaxrl search: study {settings.study_name!r} in {settings.directory / 'optuna.db'}, maximising "
            f"{settings.objective}; {len(study.trials)} trials so far, target {settings.trials}")
        if settings.objective == "gate":
            say("WARNING     search.objective=gate tunes on the gate window: the best trial's gate value is "
                "optimistic (select on validation: search.objective=validation)")
        batches = _recorded_batches(settings.directory)
        recorded = {t["number"] for trials in batches.values() for t in trials}
        for trial in study.get_trials(deepcopy=False):
            if trial.state == optuna.trial.TrialState.RUNNING and trial.number not in recorded:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # asked, never trained
        for index, trials in sorted(batches.items()):
            if not (_batch_dir(settings, index) / TOLD_FILE).exists():
                say(f"batch {index}: resuming {len(trials)} trials")
                _train_and_tell(study, settings, train, index, trials, seeds, resume=True, verbose=verbose)
        index = max(batches, default=-1) + 1
        while (done := _finished(study)) < settings.trials:
            asked = [study.ask() for _ in range(min(settings.batch, settings.trials - done))]
            trials = [{"number": trial.number, "params": suggest(trial, settings.space)} for trial in asked]
            for trial in asked:
                trial.set_user_attr("batch", index)
            _batch_dir(settings, index).mkdir(parents=True, exist_ok=True)
            write_json_atomic(_batch_dir(settings, index) / TRIALS_FILE, {"trials": trials, "seeds": seeds})
            say(f"batch {index}: {len(trials)} trials x {seeds} seed(s) = {len(trials) * seeds} members, one "
                f"population")
            _train_and_tell(study, settings, train, index, trials, seeds, resume=False, verbose=verbose)
            index += 1
        summary = search_summary(study, settings)
    say(format_search(summary))
    return summary


def _train_and_tell(study: optuna.Study, settings: SearchSettings, train: DictConfig, index: int,
                    trials: list[dict[str, Any]], seeds: int, *, resume: bool, verbose: bool) -> None:
    batch_cfg = copy.deepcopy(train)
    batch_cfg.run.resume = resume
    result = run_population(batch_cfg, _batch_dir(settings, index), verbose=verbose,
                            members=trial_members(trials, int(train.seed), seeds))
    scores = trial_scores(result["population"]["members"], trials, seeds, settings.objective)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    for score in scores:
        if states.get(score["number"]) in FINISHED:
            continue  # told before an interruption
        if score["value"] is None:
            study.tell(score["number"], state=optuna.trial.TrialState.FAIL)  # no finite score on any seed
        else:
            study.tell(score["number"], score["value"])
    write_json_atomic(_batch_dir(settings, index) / TOLD_FILE, {"objective": settings.objective, "trials": scores})


def search_summary(study: optuna.Study, settings: SearchSettings) -> dict[str, Any]:
    """Every trial (state, values, objective, gate), the best by the objective, and whether the objective's
    ranking predicts the gate (Spearman over the trials)."""
    told = {}
    for path in sorted(settings.directory.glob(f"batch*/{TOLD_FILE}")):
        for score in json.loads(path.read_text())["trials"]:
            told[score["number"]] = {**score, "batch": path.parent.name}
    trials = []
    for trial in study.get_trials(deepcopy=False):
        row = told.get(trial.number, {"number": trial.number, "params": trial.params})
        trials.append({**row, "state": trial.state.name, "value": trial.value})
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["value"]) if complete else None
    summary = {
        "study_name": settings.study_name, "storage": study_storage(settings.directory), "direction": "maximize",
        "objective": settings.objective, "optimistic": settings.objective == "gate",
        "space": settings.space, "trials": trials, "best": best,
        "validation_gate_spearman": spearman([t.get("validation") for t in complete],
                                             [t.get("gate") for t in complete]),
    }
    write_json_atomic(settings.directory / SUMMARY_FILE, summary)
    return summary


def format_search(summary: dict[str, Any], top: int = 5) -> str:
    complete = sorted((t for t in summary["trials"] if t["state"] == "COMPLETE"), key=lambda t: -t["value"])
    failed = sum(t["state"] == "FAIL" for t in summary["trials"])
    lines = [f"search      {len(summary['trials'])} trials ({len(complete)} complete, {failed} failed), "
             f"maximising {summary['objective']}" + ("  (OPTIMISTIC: tuned on the gate)" if summary["optimistic"]
                                                      else "")]
    lines.append(f"  {'trial':>5} {'value':>8} {'gate':>8} {'val':>8}  params")
    for t in complete[:top]:
        params = ", ".join(f"{k}={v:.4g}" for k, v in t["params"].items())
        lines.append(f"  {t['number']:>5d} {_fmt(t['value'])} {_fmt(t.get('gate'))} {_fmt(t.get('validation'))}  "
                     f"{params}")
    rho = summary["validation_gate_spearman"]
    lines.append(f"  validation-to-gate Spearman over the trials {_fmt(rho).strip()} (near 0 or negative: the "
                 f"validation ranking does not carry to the gate)")
    return "\n".join(lines)


def _batch_dir(settings: SearchSettings, index: int) -> Path:
    return settings.directory / f"batch{index:03d}"


def _recorded_batches(directory: Path) -> dict[int, list[dict[str, Any]]]:
    batches = {}
    for path in sorted(directory.glob(f"batch*/{TRIALS_FILE}")):
        try:
            batches[int(path.parent.name[len("batch"):])] = json.loads(path.read_text())["trials"]
        except (ValueError, KeyError) as error:
            raise UserError(f"{path}: not a jaxrl.search batch file ({error}); move it out of {directory}") from None
    return batches


def _finished(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def _median(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def _fmt(value: float | None) -> str:
    return "     n/a" if value is None else f"{value:+8.3f}"
