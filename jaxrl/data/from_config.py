"""The market data a run's config asks for: one instrument, a basket (`data.kind: basket`) or funding rates."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jaxrl.data.funding import funding_from_config
from jaxrl.data.loader import MarketData, load_market
from jaxrl.data.multi import basket_from_config
from jaxrl.data.pool import load_pool
from jaxrl.data.sanity import SanityLimits
from jaxrl.errors import UserError
from jaxrl.shipped import SHIPPED_ROOT as PROJECT_ROOT  # checkout root or the wheel's jaxrl/share



def resolve_data_path(path: str | Path, cwd: str | Path | None = None) -> Path:
    """Absolute as given; relative against `cwd` (default: the working directory), then the jaxrl checkout.
    Always absolute, so nothing deeper ever sees a relative path."""
    cwd = Path(cwd or os.getcwd())
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    if (cwd / candidate).exists():
        return (cwd / candidate).resolve()
    shipped = PROJECT_ROOT / candidate
    return shipped if shipped.exists() else (cwd / candidate).absolute()


def load_data(cfg: DictConfig) -> MarketData:
    """The data of the run's environment: one instrument, a basket (`data.kind: basket`) or funding rates."""
    years, val_years, window = cfg.gate.years, cfg.gate.val_years, int(cfg.env.window)
    selection = cfg.get("selection") or {}  # a backtest's config has none: one validation window
    folds = {"folds": selection.get("folds", 1), "embargo": selection.get("embargo", 0)}  # 1, 0: one window
    if cfg.env.name == "funding":  # its data comes from env.source (generated or a user's CSV); data/ is ignored
        return funding_from_config(OmegaConf.to_container(cfg.env.source, resolve=True), years, val_years, window,
                                   resolve=resolve_data_path, **folds)
    if cfg.data.get("kind", "single") == "basket":
        return basket_from_config(OmegaConf.to_container(cfg.data, resolve=True), years, val_years, window,
                                  resolve=resolve_data_path, **folds)
    if cfg.env.name == "portfolio":
        raise UserError(f"env=portfolio trades several instruments, data={cfg.data.get('symbol')} is one: leave "
                         "data= out for the shipped basket (data=basket), or use another data config with kind: basket")

    def load(block) -> MarketData:
        asset_class = block.get("asset_class", "tradefi")
        return load_market(
            resolve_data_path(block["path"]),
            symbol=block.get("symbol"),
            asset_class=asset_class,
            years=cfg.gate.years,
            val_years=cfg.gate.val_years,
            window=cfg.env.window,
            date_column=block.get("date_column", "Date"),
            close_column=block.get("close_column", "Close"), **folds,
            sanity=SanityLimits.for_asset_class(asset_class, block),
            format=block.get("format", "auto"),
            bar=block.get("bar", "1d"),
            periods=block.get("periods_per_year"),
        )

    data = OmegaConf.to_container(cfg.data, resolve=True)
    if data.get("pool") and cfg.env.name != "position":
        raise UserError(f"data.pool trains one position agent on several instruments; env={cfg.env.name} does not "
                        "take a pool (leave data.pool empty)")
    return load_pool(data, load(data), PROJECT_ROOT / "hydra_conf", load)
