"""Vendor files (CSV / parquet, jaxrl.data.formats) -> market arrays: strict loading, bar sizes, causal features,
train | validation | gate split."""

from jaxrl.data.loader import (
    PERIODS_PER_YEAR,
    DataError,
    MarketArrays,
    MarketData,
    Split,
    file_sha256,
    load_market,
    read_series,
)
from jaxrl.data.sanity import SanityLimits

__all__ = ["PERIODS_PER_YEAR", "DataError", "MarketArrays", "MarketData", "SanityLimits", "Split", "file_sha256", "load_market",
           "read_series"]
