"""The error of market data that cannot be used as it is (re-exported by jaxrl.data.loader and jaxrl.data)."""


class DataError(ValueError):
    """A market data file that cannot be used as it is."""
