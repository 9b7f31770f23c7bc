"""Pooled training data: the traded instrument plus other instruments whose train splits also feed its episodes.

`data.pool=[qqq,ewj]` trains one `position` agent on episodes drawn from the train splits of the run's own
instrument and of every pooled one (each normalised on its own train split, so features are comparable), then
gates it on every instrument's own gate window (`gate.json`'s `pool` block). Selection and the gate of record stay
on the run's own instrument: the pool only adds training paths, never validation or gate bars. A pooled entry is a
data config name (`hydra_conf/data/<name>.yaml`, kind single) or a mapping `{symbol, path[, asset_class,
date_column, close_column]}`; every pooled instrument must have the run's periods per year and features.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import OmegaConf

from jaxrl.data.loader import MarketData
from jaxrl.errors import UserError


@dataclasses.dataclass(frozen=True)
class PooledMarket(MarketData):
    """The run's instrument (every field of MarketData) and the instruments pooled into its training episodes."""

    pool: tuple[MarketData, ...] = ()

    def provenance(self) -> list[dict[str, str]]:
        """What a saved model records of its pooled training data: symbol, path and SHA-256 of each file."""
        return [{"symbol": m.symbol, "path": m.path, "sha256": m.sha256} for m in self.pool]


def pool_entries(pool: Sequence[Any], config_dir: Path) -> list[dict[str, Any]]:
    """Each `data.pool` entry as a data block: a name reads `<config_dir>/data/<name>.yaml`."""
    if isinstance(pool, (str, bytes)) or not isinstance(pool, Sequence):
        raise UserError(f"data.pool must be a list of data config names or {{symbol, path}} mappings, got {pool!r}")
    entries = []
    for item in pool:
        if isinstance(item, str):
            path = config_dir / "data" / f"{item}.yaml"
            if not path.is_file():
                known = sorted(p.stem for p in (config_dir / "data").glob("*.yaml"))
                raise UserError(f"data.pool: no data config {item!r} ({path}); known: {', '.join(known)}")
            block = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            block = block.get("data", block)  # a `# @package _global_` file nests its keys under data:
        elif isinstance(item, Mapping) and "path" in item:
            block = dict(item)
        else:
            raise UserError(f"data.pool entry {item!r}: expected a data config name or a mapping with a path")
        if block.get("kind", "single") != "single":
            raise UserError(f"data.pool entry {item!r}: a basket cannot be pooled; list its instruments instead")
        entries.append(block)
    return entries


def with_pool(market: MarketData, pooled: Sequence[MarketData]) -> PooledMarket:
    """`market` with `pooled` attached, after checking they can share one agent."""
    symbols = [market.symbol]
    for other in pooled:
        if other.periods_per_year != market.periods_per_year:
            raise UserError(f"data.pool: {other.path} has {other.periods_per_year} periods per year, the run's "
                            f"{market.path} has {market.periods_per_year}: pool instruments of one asset class")
        if tuple(other.feature_names) != tuple(market.feature_names):
            raise UserError(f"data.pool: {other.path} has features {other.feature_names}, expected "
                            f"{market.feature_names}")
        if other.symbol in symbols:
            raise UserError(f"data.pool: {other.symbol} ({other.path}) is listed twice or is the run's own "
                            "instrument")
        symbols.append(other.symbol)
    fields = {f.name: getattr(market, f.name) for f in dataclasses.fields(MarketData)}
    return PooledMarket(**fields, pool=tuple(pooled))


def load_pool(cfg_data: Mapping[str, Any], market: MarketData, config_dir: Path,
              load: Callable[[Mapping[str, Any]], MarketData]) -> MarketData:
    """The run's market with `data.pool` loaded by `load(data_block)` (the loader the run's own data used);
    `market` itself when the pool is empty."""
    pool = cfg_data.get("pool") or []
    if not pool:
        return market
    return with_pool(market, [load(block) for block in pool_entries(list(pool), config_dir)])
