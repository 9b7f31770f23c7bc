"""CSV/parquet -> market arrays: strict loading, causal features, train | validation | gate split."""

from jaxrl.data.loader import (
    PERIODS_PER_YEAR,
    DataError,
    MarketArrays,
    MarketData,
    Split,
    file_sha256,
    load_market,
)

__all__ = ["PERIODS_PER_YEAR", "DataError", "MarketArrays", "MarketData", "Split", "file_sha256", "load_market"]
