"""`jaxrl-backtest data=spy policy=buy_and_hold` (or `python -m jaxrl.backtest`): one policy through the gate on one
instrument.

The policy is a baseline (`policy=buy_and_hold|flat|trend_following|mean_reversion|volatility_targeting`, settings
in hydra_conf/policy/) or a registered candidate (`policy=candidate policy.id=<candidate_id>`). Both run through
`jaxrl.gate.backtest.evaluate`, the compiled backtest every trained agent is judged by, with the environment's
deadbands and costs. The run directory receives gate.json (the full gate report plus the policy), the series
(gate_series.npz) and the plots; a baseline is also recorded in the registry as an attempt of kind "baseline".

Data and gate always come from this command line, so a candidate can be judged on another instrument or a user's
file (`data.path=... data.asset_class=crypto data.symbol=X`); a candidate keeps its own saved env and agent
settings, since its network was built for them. The pipeline is `jaxrl.policy_backtest`.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

# Only Hydra, OmegaConf and light jaxrl modules here, so `--help` and a mistyped override answer at once; the
# pipeline (`jaxrl.policy_backtest`: JAX, the environments, the registry) is imported when the task function runs.
from jaxrl.cli_help import answer_help
from jaxrl.edge import absolute_location, absolute_paths
from jaxrl.errors import take_debug_flag, user_errors
from jaxrl.shipped import HYDRA_CONFIG_PATH


@hydra.main(config_path=HYDRA_CONFIG_PATH, config_name="backtest", version_base="1.3")
def main(cfg: DictConfig) -> float:
    with user_errors("jaxrl.backtest"):  # a refused backtest (unknown candidate, wrong env, bad file): one line, 2
        from jaxrl.policy_backtest import run_backtest  # the pipeline (see the imports above)

        absolute_paths(cfg)
        out_dir = absolute_location(str(cfg.get("out_dir") or HydraConfig.get().runtime.output_dir))
        report = run_backtest(cfg, out_dir)
    return report["rolling_sharpe_mean"]  # what a sweeper maximises


def cli() -> None:
    """The `jaxrl-backtest` console script: exactly `python -m jaxrl.backtest`."""
    if answer_help("jaxrl-backtest", "one policy (a baseline or a registered candidate) through the gate",
                   "backtest"):
        return
    take_debug_flag()
    main()


if __name__ == "__main__":
    cli()
