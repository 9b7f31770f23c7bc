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
from jaxrl.data.sanity import SanityLimits

__all__ = ["PERIODS_PER_YEAR", "DataError", "MarketArrays", "MarketData", "SanityLimits", "Split", "file_sha256", "load_market"]
