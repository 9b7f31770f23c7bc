"""Hyperparameter search with Optuna, both ways (README: "Sweeps that optimise the right way").

- `python -m jaxrl.search` (`jaxrl.search.batches`): Optuna's ask/tell interface proposes a batch of trials over
  traced settings (the names `sweep.*` accepts); each batch trains as ONE population, one compile, and Optuna is
  told each trial's selection (validation) score, with its gate value recorded alongside.
- `python -m jaxrl.train --multirun hydra/sweeper=optuna_gate ...`: the Hydra Optuna sweeper, one run per trial,
  maximising what `jaxrl.train` returns (the gate value).

Both keep the study in an SQLite file in a fixed directory, so running the same command again continues the study.
This module stays light (no Optuna, no JAX): the Hydra sweeper config instantiates `study_storage` from it.
"""

from __future__ import annotations

from pathlib import Path

STUDY_FILE = "optuna.db"


def study_storage(directory: str | Path) -> str:
    """The SQLite storage URL of the study kept in `directory` (created, made absolute): a re-run that points at
    the same directory and study name continues the study instead of starting another."""
    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / STUDY_FILE}"
