"""The error of market data that cannot be used as it is (re-exported by jaxrl.data.loader and jaxrl.data)."""


from jaxrl.errors import UserError


class DataError(UserError):
    """A market data file that cannot be used as it is."""
