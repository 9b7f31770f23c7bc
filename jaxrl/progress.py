"""Progress of a training run: what one update consumes (the header) and one line per chunk (rates, ETA, losses,
validation). PPO counts env steps; offline learners count updates and samples (batch x updates), never env steps;
a population reports in total and per member."""

from __future__ import annotations

import numpy as np

from jaxrl.offline.common import OfflineLearner


def _median(values) -> float:
    return float(np.median(np.asarray(values)))


def work_units(learner) -> str:
    """What one update of `learner` consumes, as the header prints it (matches the agent's config)."""
    if isinstance(learner, OfflineLearner):
        batches = learner.batches_per_update
        size = learner.config.batch_size
        return (f"{batches} batches of {size} samples (agent.batch_size={size}; an update draws {batches}: the "
                f"policy delay)" if batches > 1 else f"{size} samples (agent.batch_size={size})")
    return f"{learner.steps_per_update} env steps"


def total_rate(learner, work: int, members: int, run_s: float) -> str:
    """A whole population's rate, labelled: `work` = env steps (PPO) or samples (offline) over all members."""
    per_s = work / max(run_s, 1e-9)
    if isinstance(learner, OfflineLearner):
        updates = work / learner.steps_per_update / max(run_s, 1e-9)
        return (f"{per_s:,.0f} samples/s and {updates:,.1f} updates/s over all {members} members; "
                f"{per_s / members:,.0f} samples/s per member")
    return f"{per_s:,.0f} env steps/s over all {members} members; {per_s / members:,.0f} per member"


def progress_printer(learner, say, members: int = 1):
    """`on_chunk` for `run_in_chunks`: one line per chunk with the rate (PPO: env steps/s; offline learners:
    updates/s and samples/s; a population: in total and per member), ETA, the latest loss or reward and the
    validation score (medians over a population's members)."""
    period, per_update = learner.selection.eval_every, learner.steps_per_update
    offline = isinstance(learner, OfflineLearner)

    def on_chunk(done, total, metrics, history, state, timings):
        updates_per_s = (done - timings["resumed_from_period"]) * period / max(timings["run_s"], 1e-9)
        eta = (total - done) * period / max(updates_per_s, 1e-9)
        shown = next((name for name in ("reward_mean", "actor_loss", "critic_loss") if name in metrics),
                     next(iter(metrics)))  # a registered learner's own first metric
        each = f" ({members} members)" if members > 1 else ""
        if offline:
            rate = f"{updates_per_s:>7,.1f} updates/s  {updates_per_s * per_update * members:>11,.0f} samples/s{each}"
            if members > 1:
                rate += f" ({updates_per_s * per_update:,.0f} per member)"
        else:
            rate = f"{updates_per_s * per_update * members:>9,.0f} env steps/s{each}"
            if members > 1:
                rate += f" ({updates_per_s * per_update:,.0f} per member)"
        count = f"{done * period * per_update * members:>11,d} env steps" if not offline else ""
        line = f"  [{done * period:>5}/{total * period}] {count}{'  ' if count else ''}{rate}  eta {eta:5.0f}s  " \
               f"{shown.split('_')[0]} {_median(metrics[shown][-1]):+.4f}"
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
